//! A fake Redis on loopback that answers each command as the test says: for what a
//! real server here cannot be (an older version: only Redis 7.0 is packaged, so
//! `HELLO` and `INFO server` answers of a 6.0 server are scripted).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Answer = dyn Fn(&[String]) -> Vec<u8> + Send + Sync;

/// A fake server: every command (an array of bulk strings, as clients send them) gets
/// the raw RESP bytes the test's function returns. Counts connections and commands.
/// Stopped when dropped.
pub struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    commands: Arc<Mutex<Vec<Vec<String>>>>,
}

impl std::fmt::Debug for FakeRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRedis")
            .field("port", &self.port)
            .finish()
    }
}

/// A RESP bulk string.
pub fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

impl FakeRedis {
    /// Starts a fake server answering with `answer`.
    pub fn start(answer: impl Fn(&[String]) -> Vec<u8> + Send + Sync + 'static) -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        {
            let (stop, connections, commands) =
                (stop.clone(), connections.clone(), commands.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::SeqCst);
                            let (answer, commands, stop) =
                                (answer.clone(), commands.clone(), stop.clone());
                            std::thread::spawn(move || serve(stream, &*answer, &commands, &stop));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            });
        }
        FakeRedis {
            port,
            stop,
            connections,
            commands,
        }
    }

    /// A fake Redis of `version` that, as servers before 6.0, knows no `HELLO`:
    /// `INFO` says `redis_version:{version}`, `PING` is answered, every other command
    /// is an error.
    pub fn old_redis(version: &str) -> FakeRedis {
        let version = version.to_string();
        Self::start(
            move |cmd| match cmd.first().map(|c| c.to_ascii_uppercase()).as_deref() {
                Some("HELLO") => b"-ERR unknown command 'HELLO'\r\n".to_vec(),
                Some("INFO") => bulk(&format!(
                    "# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n"
                )),
                Some("PING") => b"+PONG\r\n".to_vec(),
                Some(other) => format!("-ERR unknown command '{other}'\r\n").into_bytes(),
                None => b"-ERR empty\r\n".to_vec(),
            },
        )
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Commands received so far (name and arguments).
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads commands (RESP arrays of bulk strings, or inline lines) and answers them.
fn serve(
    stream: TcpStream,
    answer: &Answer,
    commands: &Mutex<Vec<Vec<String>>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let cmd: Vec<String> = if let Some(n) = line.trim_end().strip_prefix('*') {
            let n: usize = n.parse().unwrap_or(0);
            let mut args = Vec::with_capacity(n);
            for _ in 0..n {
                let mut len_line = String::new();
                if reader.read_line(&mut len_line).unwrap_or(0) == 0 {
                    return;
                }
                let len: usize = len_line
                    .trim_end()
                    .trim_start_matches('$')
                    .parse()
                    .unwrap_or(0);
                let mut buf = vec![0u8; len + 2];
                if std::io::Read::read_exact(&mut reader, &mut buf).is_err() {
                    return;
                }
                buf.truncate(len);
                args.push(String::from_utf8_lossy(&buf).into_owned());
            }
            args
        } else {
            line.split_whitespace().map(str::to_string).collect()
        };
        if cmd.is_empty() {
            continue;
        }
        commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cmd.clone());
        if out.write_all(&answer(&cmd)).is_err() {
            return;
        }
    }
}
