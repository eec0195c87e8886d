//! A local SMTP server as a mail provider runs one: it serves `localhost` with a self-signed
//! certificate made for the test, on two ports — one that offers nothing but STARTTLS until
//! the connection is encrypted, one that speaks TLS from the first byte — and accepts mail only
//! after AUTH (PLAIN or LOGIN) with its one account. A wrong password is answered
//! `535 5.7.8 Authentication credentials invalid`.

use super::smtp::ReceivedMail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub const REFUSED_LOGIN: &str = "535 5.7.8 Authentication credentials invalid";

#[derive(Clone)]
pub struct TlsSmtpServer {
    /// The STARTTLS port.
    pub port: u16,
    /// The implicit-TLS port.
    pub tls_port: u16,
    /// The server's self-signed certificate, PEM: what a client must be told to trust.
    pub certificate_pem: String,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    refused_logins: Arc<AtomicUsize>,
}

struct Account {
    username: String,
    password: String,
}

impl TlsSmtpServer {
    pub async fn start(username: &str, password: &str) -> TlsSmtpServer {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        // The process's provider: ring, the only one compiled in.
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("a TLS server configuration");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = TlsSmtpServer {
            port: listener.local_addr().unwrap().port(),
            tls_port: tls_listener.local_addr().unwrap().port(),
            certificate_pem: certified.cert.pem(),
            received: Arc::default(),
            refused_logins: Arc::default(),
        };
        let account = Arc::new(Account {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        for (listener, implicit) in [(listener, false), (tls_listener, true)] {
            let (shared, acceptor, account) = (server.clone(), acceptor.clone(), account.clone());
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let (server, acceptor, account) =
                        (shared.clone(), acceptor.clone(), account.clone());
                    tokio::spawn(async move {
                        if implicit {
                            server
                                .implicit_tls_session(socket, acceptor, &account)
                                .await;
                        } else {
                            server.session(socket, acceptor, &account).await;
                        }
                    });
                }
            });
        }
        server
    }

    pub fn messages_to(&self, address: &str) -> Vec<ReceivedMail> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .cloned()
            .collect()
    }

    /// How many AUTH attempts were refused.
    pub fn refused_logins(&self) -> usize {
        self.refused_logins.load(Ordering::SeqCst)
    }

    async fn session(&self, socket: TcpStream, acceptor: TlsAcceptor, account: &Account) {
        let mut plain = BufReader::new(socket);
        if !self.before_tls(&mut plain).await {
            return;
        }
        // The client waits for the 220 before its handshake, so nothing is left buffered.
        let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
            return;
        };
        self.after_tls(&mut BufReader::new(tls), account).await;
    }

    async fn implicit_tls_session(
        &self,
        socket: TcpStream,
        acceptor: TlsAcceptor,
        account: &Account,
    ) {
        let Ok(tls) = acceptor.accept(socket).await else {
            return;
        };
        let mut stream = BufReader::new(tls);
        if reply(&mut stream, "220 localhost ESMTP ready")
            .await
            .is_some()
        {
            self.after_tls(&mut stream, account).await;
        }
    }

    /// The plain-text part: only EHLO, STARTTLS and QUIT. Whether STARTTLS was asked for.
    async fn before_tls(&self, stream: &mut BufReader<TcpStream>) -> bool {
        if reply(stream, "220 localhost ESMTP ready").await.is_none() {
            return false;
        }
        while let Some(line) = read_line(stream).await {
            let command = line.to_uppercase();
            let answer = if command.starts_with("EHLO") || command.starts_with("HELO") {
                "250-localhost\r\n250-STARTTLS\r\n250 8BITMIME"
            } else if command == "STARTTLS" {
                return reply(stream, "220 2.0.0 Ready to start TLS")
                    .await
                    .is_some();
            } else if command == "QUIT" {
                reply(stream, "221 bye").await;
                return false;
            } else {
                "530 5.7.0 Must issue a STARTTLS command first"
            };
            if reply(stream, answer).await.is_none() {
                return false;
            }
        }
        false
    }

    async fn after_tls<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut BufReader<S>,
        account: &Account,
    ) -> Option<()> {
        let (mut authenticated, mut from, mut to) = (false, String::new(), Vec::new());
        loop {
            let line = read_line(stream).await?;
            let command = line.to_uppercase();
            if command.starts_with("EHLO") || command.starts_with("HELO") {
                reply(
                    stream,
                    "250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME",
                )
                .await?;
            } else if command.starts_with("AUTH ") {
                let (username, password) = authenticate(stream, &line).await?;
                if username == account.username && password == account.password {
                    authenticated = true;
                    reply(stream, "235 2.7.0 Authentication successful").await?;
                } else {
                    self.refused_logins.fetch_add(1, Ordering::SeqCst);
                    reply(stream, REFUSED_LOGIN).await?;
                }
            } else if !authenticated && (command.starts_with("MAIL") || command.starts_with("RCPT"))
            {
                reply(stream, "530 5.7.0 Authentication required").await?;
            } else if command.starts_with("MAIL FROM:") {
                from = line[10..].trim().to_owned();
                reply(stream, "250 OK").await?;
            } else if command.starts_with("RCPT TO:") {
                to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                reply(stream, "250 OK").await?;
            } else if command == "DATA" {
                reply(stream, "354 end with <CRLF>.<CRLF>").await?;
                let mut data = String::new();
                loop {
                    let line = read_line(stream).await?;
                    if line == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                    data.push('\n');
                }
                self.received.lock().unwrap().push(ReceivedMail {
                    from: std::mem::take(&mut from),
                    to: std::mem::take(&mut to),
                    data,
                });
                reply(stream, "250 OK queued").await?;
            } else if command == "QUIT" {
                reply(stream, "221 bye").await;
                return Some(());
            } else {
                reply(stream, "250 OK").await?;
            }
        }
    }
}

/// The (username, password) of an `AUTH PLAIN` or `AUTH LOGIN` exchange.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    command: &str,
) -> Option<(String, String)> {
    let mut words = command.split_whitespace().skip(1);
    let mechanism = words.next()?.to_uppercase();
    let initial = words.next().map(str::to_owned);
    let decode = |text: &str| String::from_utf8(STANDARD.decode(text.trim()).ok()?).ok();
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(response) => response,
                None => {
                    reply(stream, "334 ").await?;
                    read_line(stream).await?
                }
            };
            let decoded = decode(&response)?;
            let mut parts = decoded.split('\0').skip(1);
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        }
        "LOGIN" => {
            let username = match initial {
                Some(username) => decode(&username)?,
                None => {
                    reply(stream, "334 VXNlcm5hbWU6").await?;
                    decode(&read_line(stream).await?)?
                }
            };
            reply(stream, "334 UGFzc3dvcmQ6").await?;
            let password = decode(&read_line(stream).await?)?;
            Some((username, password))
        }
        _ => None,
    }
}

/// One line without its line ending; None at the end of the stream.
async fn read_line<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match stream.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    text: &str,
) -> Option<()> {
    let stream = stream.get_mut();
    stream
        .write_all(format!("{text}\r\n").as_bytes())
        .await
        .ok()?;
    stream.flush().await.ok()
}
