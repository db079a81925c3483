//! A TCP stream for libgit2 with `TCP_NODELAY` set: the one piece of `unsafe` in the
//! engine, kept small and isolated here.
//!
//! Why: libgit2's own socket stream leaves Nagle's algorithm on, and its HTTP client
//! writes a POST's headers and body in two writes. The body then waits for the
//! server to acknowledge the headers, and servers delay that ACK (40 ms on Linux).
//! Measured on loopback: every upload-pack POST stalled ~41 ms, two per shallow
//! fetch, which was 85 of the 117 ms of a warm sync over smart HTTP. curl (the git
//! CLI) sets `TCP_NODELAY`; libgit2 has no option for it, but lets an application
//! register the "standard" stream it builds every connection on (HTTP, and HTTPS,
//! whose OpenSSL stream wraps this one; `git://`). This module registers a stream
//! over `std::net::TcpStream` with `TCP_NODELAY`, honouring libgit2's connect and
//! read timeouts.
//!
//! After every read it re-arms `TCP_QUICKACK`: servers that write a response in
//! several pieces without `TCP_NODELAY` (git daemon, upload-pack) otherwise wait for
//! our delayed ACK between pieces (measured: a warm sync over git daemon went from
//! ~65 ms to ~19 ms).
//!
//! It also bounds how long one read or write may wait (5 minutes by default, when
//! libgit2 sets no timeout of its own), so a server that stops answering fails the
//! clone or sync with a network error instead of blocking a start forever. Reads and
//! writes wait in short slices ([`SLICE`]) and report each one to the current
//! operation's limits (`watch.rs`, a thread-local the engine sets around each
//! operation): a cancelled [`CancelToken`](crate::CancelToken) is noticed within a
//! slice, a passed deadline too, and a server trickling bytes below the low-speed
//! limit fails once the limit's window has passed. Connecting waits at most until the
//! deadline.
//!
//! ssh connections use this stream too: libgit2's ssh transport connects with it, and
//! our vendored libgit2 has libssh2 read and write through it (`vendor/README.md`),
//! so a stalled ssh server meets the same limits. libssh2 makes the socket
//! non-blocking; the stream makes it blocking again when a read or write returns at
//! once with nothing.
//!
//! Not here: TLS (libgit2's OpenSSL stream wraps this one), proxies (libgit2's HTTP
//! client connects to the proxy itself), anything about git.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Once;
use std::time::{Duration, Instant};

use super::watch;

/// The longest one read or write may wait when libgit2 asks for no timeout.
pub(crate) const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one blocking read or write waits before the operation's limits are
/// checked again.
const SLICE: Duration = Duration::from_millis(250);

thread_local! {
    /// Per-thread override of [`DEFAULT_IO_TIMEOUT`] (libgit2 creates and uses a
    /// stream on the thread that runs the fetch), for tests.
    static IO_TIMEOUT: Cell<Duration> = const { Cell::new(DEFAULT_IO_TIMEOUT) };
}

/// Runs `f` with another I/O timeout for streams created on this thread.
#[cfg(test)]
pub(crate) fn with_io_timeout<T>(timeout: Duration, f: impl FnOnce() -> T) -> T {
    let old = IO_TIMEOUT.with(|t| t.replace(timeout));
    let out = f();
    IO_TIMEOUT.with(|t| t.set(old));
    out
}

/// `git_stream` from `git2/sys/stream.h` (version 1). The two one-bit fields
/// `encrypted` and `proxy_support` share one `unsigned int`.
#[repr(C)]
struct RawStream {
    version: c_int,
    flags: c_uint,
    timeout: c_int,
    connect_timeout: c_int,
    connect: unsafe extern "C" fn(*mut RawStream) -> c_int,
    certificate: unsafe extern "C" fn(*mut *mut c_void, *mut RawStream) -> c_int,
    set_proxy: unsafe extern "C" fn(*mut RawStream, *const c_void) -> c_int,
    read: unsafe extern "C" fn(*mut RawStream, *mut c_void, usize) -> isize,
    write: unsafe extern "C" fn(*mut RawStream, *const c_char, usize, c_int) -> isize,
    close: unsafe extern "C" fn(*mut RawStream) -> c_int,
    free: unsafe extern "C" fn(*mut RawStream),
}

/// `git_stream_registration` (version 1).
#[repr(C)]
struct Registration {
    version: c_int,
    init: Option<unsafe extern "C" fn(*mut *mut RawStream, *const c_char, *const c_char) -> c_int>,
    wrap: Option<unsafe extern "C" fn(*mut *mut RawStream, *mut RawStream, *const c_char) -> c_int>,
}

/// `GIT_STREAM_STANDARD`.
const GIT_STREAM_STANDARD: c_int = 1;

unsafe extern "C" {
    fn git_stream_register(kind: c_int, registration: *mut Registration) -> c_int;
}

/// Our stream. Layout-compatible with libgit2's private `git_socket_stream`
/// (`git_stream parent; char *host; char *port; GIT_SOCKET s;`): libgit2's ssh
/// transport takes the socket out of *any* standard stream by casting it to that
/// struct (`ssh_libssh2.c`), and hands the fd to libssh2 (which then only sets it
/// non-blocking and checks it is a socket: its reads and writes come back to this
/// stream). So the first fields mirror it, `fd` holds the connected socket, and the
/// Rust state follows.
#[repr(C)]
struct Stream {
    raw: RawStream,
    host_c: *mut c_char,
    port_c: *mut c_char,
    fd: c_int,
    host: String,
    port: String,
    tcp: Option<TcpStream>,
    /// The I/O timeout when libgit2 sets none.
    io_timeout: Duration,
}

/// Registers the stream once per process. Falls back to libgit2's own stream (with
/// a debug log) if registration fails.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libgit2_sys::init();
        let mut reg = Registration {
            version: 1,
            init: Some(stream_init),
            wrap: None,
        };
        // SAFETY: libgit2 is initialised; `reg` is a valid registration that libgit2
        // copies (registry.c memcpy's it) before returning; `stream_init` has the
        // C signature libgit2 calls.
        let rc = unsafe { git_stream_register(GIT_STREAM_STANDARD, &mut reg) };
        if rc == 0 {
            tracing::debug!("libgit2 TCP stream with TCP_NODELAY registered");
        } else {
            tracing::debug!(
                rc,
                "could not register the TCP_NODELAY stream; using libgit2's own"
            );
        }
    });
}

fn set_error(message: &str) {
    let msg = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: `msg` is a valid NUL-terminated string; libgit2 copies it.
    unsafe {
        libgit2_sys::git_error_set_str(libgit2_sys::GIT_ERROR_NET as c_int, msg.as_ptr());
    }
}

/// Runs `f` on the Rust half of the stream, turning a panic into an error return:
/// unwinding into C is undefined behaviour.
fn with_stream<T>(raw: *mut RawStream, on_error: T, f: impl FnOnce(&mut Stream) -> T) -> T {
    if raw.is_null() {
        set_error("null stream");
        return on_error;
    }
    // SAFETY: every `RawStream` libgit2 hands to our callbacks is the first field of a
    // `Stream` allocated by `stream_init` (repr(C), so the pointers coincide), alive
    // until `stream_free`; libgit2 does not use one stream from two threads at once.
    let stream = unsafe { &mut *raw.cast::<Stream>() };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(stream))) {
        Ok(v) => v,
        Err(_) => {
            set_error("internal error in the TCP stream");
            on_error
        }
    }
}

unsafe extern "C" fn stream_init(
    out: *mut *mut RawStream,
    host: *const c_char,
    port: *const c_char,
) -> c_int {
    if out.is_null() || host.is_null() || port.is_null() {
        set_error("invalid stream arguments");
        return -1;
    }
    // SAFETY: libgit2 passes NUL-terminated strings valid for this call.
    let (host, port) = unsafe {
        (
            CStr::from_ptr(host).to_string_lossy().into_owned(),
            CStr::from_ptr(port).to_string_lossy().into_owned(),
        )
    };
    let host_c = CString::new(host.as_str()).unwrap_or_default().into_raw();
    let port_c = CString::new(port.as_str()).unwrap_or_default().into_raw();
    let stream = Box::new(Stream {
        raw: RawStream {
            version: 1,
            flags: 0, // not encrypted, no proxy support (libgit2 handles proxies itself)
            timeout: 0,
            connect_timeout: 0,
            connect: stream_connect,
            certificate: stream_certificate,
            set_proxy: stream_set_proxy,
            read: stream_read,
            write: stream_write,
            close: stream_close,
            free: stream_free,
        },
        host_c,
        port_c,
        fd: -1,
        host,
        port,
        tcp: None,
        io_timeout: IO_TIMEOUT.with(Cell::get),
    });
    // SAFETY: `out` is non-null and points to writable storage for one pointer.
    unsafe { *out = Box::into_raw(stream).cast::<RawStream>() };
    0
}

fn millis(ms: c_int) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

impl Stream {
    /// libgit2's timeout if it set one, else ours.
    fn io_timeout(&self) -> Duration {
        millis(self.raw.timeout).unwrap_or(self.io_timeout)
    }
}

unsafe extern "C" fn stream_connect(raw: *mut RawStream) -> c_int {
    with_stream(raw, -1, |s| {
        let port: u16 = match s.port.parse() {
            Ok(p) => p,
            Err(_) => {
                set_error(&format!("invalid port `{}`", s.port));
                return -1;
            }
        };
        let host = s.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = match (host, port).to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                set_error(&format!("failed to resolve address for {}: {e}", s.host));
                return -1;
            }
        };
        let mut last = None;
        for addr in &addrs {
            if let Err(why) = watch::check_current() {
                set_error(&why);
                return -1;
            }
            let mut timeout = millis(s.raw.connect_timeout).unwrap_or(s.io_timeout);
            if let Some(left) = watch::remaining() {
                // connect_timeout refuses a zero duration; the check above caught a
                // passed deadline.
                timeout = timeout.min(left.max(Duration::from_millis(1)));
            }
            let attempt = TcpStream::connect_timeout(addr, timeout);
            match attempt {
                Ok(tcp) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY not set");
                    }
                    s.fd = tcp.as_raw_fd();
                    s.tcp = Some(tcp);
                    return 0;
                }
                Err(e) => last = Some(e),
            }
        }
        let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
        set_error(&format!("failed to connect to {}: {why}", s.host));
        -1
    })
}

unsafe extern "C" fn stream_certificate(_out: *mut *mut c_void, _raw: *mut RawStream) -> c_int {
    set_error("a plain TCP stream has no certificate");
    -1
}

unsafe extern "C" fn stream_set_proxy(_raw: *mut RawStream, _opts: *const c_void) -> c_int {
    set_error("this stream does not support proxies");
    -1
}

unsafe extern "C" fn stream_read(raw: *mut RawStream, data: *mut c_void, len: usize) -> isize {
    stream_io(raw, Way::Read, data.is_null() && len > 0, |tcp| {
        if len == 0 {
            // a null pointer is allowed with no bytes, but not in a slice
            return Ok(0);
        }
        // SAFETY: libgit2 passes a writable buffer of `len` bytes (not null: checked
        // by `stream_io` when `len > 0`).
        let buf = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), len) };
        tcp.read(buf)
    })
}

unsafe extern "C" fn stream_write(
    raw: *mut RawStream,
    data: *const c_char,
    len: usize,
    _flags: c_int,
) -> isize {
    stream_io(raw, Way::Write, data.is_null() && len > 0, |tcp| {
        if len == 0 {
            return Ok(0);
        }
        // SAFETY: libgit2 passes a readable buffer of `len` bytes (not null: checked
        // by `stream_io` when `len > 0`).
        let buf = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        tcp.write(buf)
    })
}

/// A read or write callback: refuses a null buffer (`null_buffer`), then runs `io` on
/// the stream with [`sliced_io`].
fn stream_io(
    raw: *mut RawStream,
    way: Way,
    null_buffer: bool,
    io: impl FnMut(&mut TcpStream) -> std::io::Result<usize>,
) -> isize {
    if null_buffer {
        set_error(&format!("null {} buffer", way.verb()));
        return -1;
    }
    with_stream(raw, -1, |s| sliced_io(s, way, io))
}

/// Which way [`sliced_io`] moves bytes.
#[derive(Clone, Copy)]
enum Way {
    Read,
    Write,
}

impl Way {
    fn verb(self) -> &'static str {
        match self {
            Way::Read => "read",
            Way::Write => "write",
        }
    }

    fn set_timeout(self, tcp: &TcpStream, slice: Duration) -> std::io::Result<()> {
        match self {
            Way::Read => tcp.set_read_timeout(Some(slice)),
            Way::Write => tcp.set_write_timeout(Some(slice)),
        }
    }

    /// Reports `moved` bytes (`None`: a slice passed with none) after `waited` to the
    /// current operation's limits: `Err` with a message once it must stop.
    fn report(self, tcp: &TcpStream, moved: Option<usize>, waited: Duration) -> Result<(), String> {
        match (self, moved) {
            (Way::Read, Some(n)) => {
                // Acknowledge at once (Linux re-arms delayed ACKs after reads): a
                // server that writes a response in pieces without TCP_NODELAY
                // (git daemon, upload-pack) would otherwise wait for our delayed
                // ACK before sending its next piece.
                let _ = rustix::net::sockopt::set_tcp_quickack(tcp, true);
                watch::note_network(n, waited)
            }
            (Way::Read, None) => watch::note_network(0, waited),
            (Way::Write, Some(_)) => Ok(()),
            (Way::Write, None) => watch::check_current(),
        }
    }

    fn timed_out(self, timeout: Duration) -> String {
        match self {
            Way::Read => format!("the server sent nothing for {timeout:?}: read timed out"),
            Way::Write => format!("the server accepted nothing for {timeout:?}: write timed out"),
        }
    }
}

/// One read or write (`io`) on a connected stream, waiting in [`SLICE`]s so that the
/// operation's limits are checked between them, until the stream's timeout passes.
/// Returns the bytes moved, or -1 with the error set.
fn sliced_io(
    s: &mut Stream,
    way: Way,
    mut io: impl FnMut(&mut TcpStream) -> std::io::Result<usize>,
) -> isize {
    let timeout = s.io_timeout();
    let verb = way.verb();
    let Some(tcp) = s.tcp.as_mut() else {
        set_error(&format!("{verb} on an unconnected stream"));
        return -1;
    };
    let give_up = Instant::now() + timeout;
    loop {
        let slice = SLICE.min(give_up.saturating_duration_since(Instant::now()));
        if way
            .set_timeout(tcp, slice.max(Duration::from_millis(1)))
            .is_err()
        {
            set_error(&format!("could not set the {verb} timeout"));
            return -1;
        }
        let t = Instant::now();
        let moved = match io(tcp) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if t.elapsed() < slice / 2 {
                    // Gave up at once: the socket was made non-blocking (libssh2
                    // does that to the socket of an ssh connection). Wait in
                    // slices again.
                    if let Err(e) = tcp.set_nonblocking(false) {
                        set_error(&format!("could not make the socket blocking: {e}"));
                        return -1;
                    }
                    continue;
                }
                None
            }
            Err(e) => {
                let prep = match way {
                    Way::Read => "from",
                    Way::Write => "to",
                };
                set_error(&format!("could not {verb} {prep} socket: {e}"));
                return -1;
            }
        };
        if let Err(why) = way.report(tcp, moved, t.elapsed()) {
            set_error(&why);
            return -1;
        }
        if let Some(n) = moved {
            return n as isize;
        }
        if Instant::now() >= give_up {
            set_error(&way.timed_out(timeout));
            return -1;
        }
    }
}

unsafe extern "C" fn stream_close(raw: *mut RawStream) -> c_int {
    with_stream(raw, -1, |s| {
        if let Some(tcp) = s.tcp.take() {
            let _ = tcp.shutdown(std::net::Shutdown::Both);
        }
        s.fd = -1;
        0
    })
}

unsafe extern "C" fn stream_free(raw: *mut RawStream) {
    if raw.is_null() {
        return;
    }
    // SAFETY: `raw` came from `Box::into_raw` in `stream_init` and libgit2 frees each
    // stream exactly once; `host_c`/`port_c` came from `CString::into_raw` there.
    unsafe {
        let stream = Box::from_raw(raw.cast::<Stream>());
        if !stream.host_c.is_null() {
            drop(CString::from_raw(stream.host_c));
        }
        if !stream.port_c.is_null() {
            drop(CString::from_raw(stream.port_c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoUrl;
    use crate::credentials::Credentials;
    use crate::error::Error;

    #[test]
    fn a_server_that_stops_answering_fails_with_a_network_error()
    -> Result<(), Box<dyn std::error::Error>> {
        // Accepts connections and never answers, until the test is done.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let conns: Vec<_> = listener.incoming().take(1).collect();
            let _ = done_rx.recv_timeout(Duration::from_secs(60));
            drop(conns);
        });
        let url = RepoUrl::parse(&format!("http://127.0.0.1:{port}/app.git"))?;
        let err = with_io_timeout(Duration::from_millis(300), || {
            crate::git::remote_default_branch(&url, &Credentials::none())
        })
        .expect_err("must time out");
        let _ = done_tx.send(());
        assert!(
            matches!(&err, Error::Network { message, .. } if message.contains("timed out")),
            "{err:?}"
        );
        holder.join().map_err(|_| "holder thread panicked")?;
        Ok(())
    }
}
