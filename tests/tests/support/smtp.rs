//! A local SMTP sink: a real SMTP server (just enough of RFC 5321 for a client like lettre)
//! that accepts every message and keeps it for assertions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl ReceivedMail {
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_lowercase());
        self.data
            .lines()
            .take_while(|line| !line.is_empty())
            .find(|line| line.to_lowercase().starts_with(&prefix))
            .map(|line| line[prefix.len()..].trim().to_owned())
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The `Message-ID` header: Waymark's stable id of the email (`<email-id@waymark>`).
    pub fn message_id(&self) -> String {
        self.header("Message-ID")
            .unwrap_or_else(|| panic!("a message without a Message-ID: {}", self.data))
    }
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read);
                    write.write_all(b"220 sink.test ESMTP ready\r\n").await.ok();
                    let (mut from, mut to) = (String::new(), Vec::new());
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let command = line.trim_end().to_uppercase();
                        let reply: &[u8] =
                            if command.starts_with("EHLO") || command.starts_with("HELO") {
                                b"250 sink.test\r\n"
                            } else if command.starts_with("MAIL FROM:") {
                                from = line.trim_end()[10..].trim().to_owned();
                                b"250 OK\r\n"
                            } else if command.starts_with("RCPT TO:") {
                                to.push(
                                    line.trim_end()[8..]
                                        .trim()
                                        .trim_matches(['<', '>'])
                                        .to_owned(),
                                );
                                b"250 OK\r\n"
                            } else if command == "DATA" {
                                write
                                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                                    .await
                                    .ok();
                                let mut data = String::new();
                                loop {
                                    line.clear();
                                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                        return;
                                    }
                                    if line == ".\r\n" || line == ".\n" {
                                        break;
                                    }
                                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                }
                                let data = data.replace("\r\n", "\n");
                                store.lock().unwrap().push(ReceivedMail {
                                    from: std::mem::take(&mut from),
                                    to: std::mem::take(&mut to),
                                    data,
                                });
                                b"250 OK queued\r\n"
                            } else if command == "QUIT" {
                                write.write_all(b"221 bye\r\n").await.ok();
                                return;
                            } else {
                                b"250 OK\r\n"
                            };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, received }
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap().clone()
    }

    /// How many messages the sink received with each `Message-ID`.
    pub fn count_by_message_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for message in self.messages() {
            *counts.entry(message.message_id()).or_default() += 1;
        }
        counts
    }

    /// How many messages the sink received for each (recipient, subject).
    pub fn count_by_recipient_and_subject(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for message in self.messages() {
            for to in &message.to {
                *counts.entry((to.clone(), message.subject())).or_default() += 1;
            }
        }
        counts
    }

    pub fn messages_to(&self, address: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == address))
            .collect()
    }
}
