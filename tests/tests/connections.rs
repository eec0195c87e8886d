//! Connection limits: idle and half-sent connections are closed after the idle timeout, past
//! the connection cap new connections wait for a free slot instead of taking a file
//! descriptor each, and a thousand idle connections leave the API answering.

mod support;

use std::time::Duration;
use support::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Read until the server closes the connection; what it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 30 s"),
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed_and_the_cap_makes_newcomers_wait() {
    // Given a server taking at most three connections, closing those idle for a second
    let server = Server::start(ServerOptions {
        extra_args: vec![
            "--max-connections".into(),
            "3".into(),
            "--idle-timeout".into(),
            "1s".into(),
        ],
        ..Default::default()
    })
    .await;

    // When three clients connect: one sends nothing, one half a request head, one a request
    // and then stays idle on the keep-alive connection
    let mut silent = TcpStream::connect(address(&server)).await.unwrap();
    let mut trickling = TcpStream::connect(address(&server)).await.unwrap();
    trickling
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();

    // Then a fourth client is served once a slot frees, without an error
    let (status, _) = server
        .request(reqwest::Method::GET, "/v1/health", None, None)
        .await;
    assert_eq!(status, 200);

    // And the server closed all three: the idle one after answering its request
    assert!(until_closed(&mut silent).await.is_empty());
    assert!(until_closed(&mut trickling).await.is_empty());
    let answered = String::from_utf8(until_closed(&mut idle).await).unwrap();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
}

#[tokio::test]
async fn a_thousand_idle_connections_leave_the_api_answering() {
    let server = Server::start(ServerOptions::default()).await;
    let mut idle = Vec::new();
    for _ in 0..1_100 {
        idle.push(TcpStream::connect(address(&server)).await.unwrap());
    }
    for _ in 0..5 {
        let (status, _) = server
            .request(reqwest::Method::GET, "/v1/health", None, None)
            .await;
        assert_eq!(status, 200);
    }
    drop(idle);
}
