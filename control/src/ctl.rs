//! The control socket: a Unix stream socket (mode 0600, so root-only), one request per connection.
//!
//! Request: one line of words (`list ruleset`, `stats`, `reload`, `conntrack -L`), optionally followed by a
//! body after the newline (a ruleset for `load`). Response: a status line `ok` or `error`, then the body.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/sluice/sluice.sock";

/// A handler answers one request: `Ok(body)` or `Err(message)`.
pub type Handler = dyn Fn(&str, &str) -> std::result::Result<String, String> + Send + Sync;

/// Binds the socket (replacing a stale one) and serves requests on a background thread, which runs on `cpus`
/// when that is not empty (the daemon keeps compiling rulesets off the workers' cores).
pub fn serve(path: &Path, handler: Box<Handler>, cpus: Vec<usize>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another sluice daemon is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path).ok();
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("sluice-ctl".into())
        .spawn(move || {
            if !cpus.is_empty() && !pin_current_thread_to(&cpus) {
                tracing::warn!("control thread: could not pin to CPUs {cpus:?}");
            }
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream, &*handler) {
                    tracing::warn!("control request failed: {e:#}");
                }
            }
        })?;
    Ok(())
}

/// Restricts the calling thread to the CPUs `cpus` (ids as the kernel numbers them).
fn pin_current_thread_to(cpus: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it; sched_setaffinity(0, …) applies to
    // the calling thread and reads `size_of::<cpu_set_t>()` bytes of `set`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c, &mut set);
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn answer(stream: UnixStream, handler: &Handler) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut body = String::new();
    reader.read_to_string(&mut body)?;
    let mut stream = stream;
    match handler(line.trim(), &body) {
        Ok(out) => write!(stream, "ok\n{out}")?,
        Err(msg) => write!(stream, "error\n{msg}")?,
    }
    Ok(())
}

/// Sends one request and returns the response body; a daemon-side error becomes `Err` with its message.
pub fn request(path: &Path, line: &str, body: &str) -> Result<String> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "no sluice daemon on {} (is `sluice run` up?)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "{line}\n{body}")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    match out.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_string()),
        Some(("error", rest)) => Err(anyhow::anyhow!("{}", rest.trim_end())),
        _ if out == "ok" => Ok(String::new()),
        _ => bail!("malformed reply from the daemon: {out:?}"),
    }
}
