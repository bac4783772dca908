//! Small network tools the lab runs inside its namespaces (`sluice internal …`), so the lab needs nothing
//! beyond iproute2: an HTTP server, an HTTP GET, a TCP connect, an ICMP echo. All use the kernel's own
//! sockets, so the traffic through sluice is real kernel TCP on both ends.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Serves HTTP/1.0 on every address given until killed. `GET /bytes/N` answers N bytes; anything else a
/// short greeting.
pub fn http_serve(addrs: &[SocketAddr]) -> Result<()> {
    let mut threads = Vec::new();
    for &addr in addrs {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve_one(stream));
            }
        }));
    }
    eprintln!("listening");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn serve_one(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let body: Vec<u8> = match path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => (0..n).map(|i| b'a' + (i % 26) as u8).collect(),
        None => b"hello from sluice-srv\n".to_vec(),
    };
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&body));
}

/// Fetches `http://ADDR/PATH`; returns the status line and the body length.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(String, usize)> {
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).context("read response")?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header in the response")?;
    let status = String::from_utf8_lossy(&resp[..split])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Ok((status, resp.len() - split - 4))
}

/// Outcome of a TCP connect attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Connect {
    Open,
    Refused,
    TimedOut,
}

pub fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<Connect> {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => Ok(Connect::Open),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(Connect::Refused),
        Err(e)
            if e.kind() == std::io::ErrorKind::TimedOut
                || e.kind() == std::io::ErrorKind::WouldBlock =>
        {
            Ok(Connect::TimedOut)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `count` ICMP echo requests to `dst`, one every `interval`, over a raw socket (root) and returns how
/// many replies came back within `timeout` each.
pub fn ping(dst: Ipv4Addr, count: u16, interval: Duration, timeout: Duration) -> Result<u16> {
    // SAFETY: plain socket(2) call; the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        bail!("raw ICMP socket: {}", std::io::Error::last_os_error());
    }
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let id = (std::process::id() & 0xffff) as u16;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(dst).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut got = 0;
    for seq in 1..=count {
        let started = Instant::now();
        let mut pkt = [0u8; 64];
        pkt[0] = 8;
        pkt[4..6].copy_from_slice(&id.to_be_bytes());
        pkt[6..8].copy_from_slice(&seq.to_be_bytes());
        let c = dataplane::wire::checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
        // SAFETY: pkt and sa are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                fd,
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if n < 0 {
            bail!("sendto {dst}: {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) } <= 0 {
                break;
            }
            let mut buf = [0u8; 1500];
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 28 {
                continue;
            }
            let ihl = (buf[0] & 0xf) as usize * 4;
            let icmp = &buf[ihl..n as usize];
            if icmp.len() >= 8
                && icmp[0] == 0
                && u16::from_be_bytes([icmp[4], icmp[5]]) == id
                && u16::from_be_bytes([icmp[6], icmp[7]]) == seq
                && buf[12..16] == dst.octets()
            {
                got += 1;
                break;
            }
        }
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(got)
}

/// Sends `count` TCP SYNs to `dst` from `src` with changing source ports, through a raw socket: a SYN
/// flood for the table-full tests. Returns how many were sent.
pub fn syn_flood(src: std::net::Ipv4Addr, dst: std::net::SocketAddrV4, count: u32) -> Result<u32> {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_TCP) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut sent = 0;
    for i in 0..count {
        let sport = 1024 + (i % 64000) as u16;
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dst.port().to_be_bytes());
        h[4..8].copy_from_slice(&(i.wrapping_mul(2_654_435_761)).to_be_bytes());
        h[12] = 5 << 4;
        h[13] = 0x02;
        h[14..16].copy_from_slice(&64240u16.to_be_bytes());
        let mut sum: u32 = 0;
        for c in src.octets().chunks(2).chain(dst.ip().octets().chunks(2)) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        sum += 6 + 20;
        for c in h.chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        h[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        // SAFETY: the buffer and address outlive the call.
        let n = unsafe {
            libc::sendto(
                fd,
                h.as_ptr().cast(),
                h.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n == h.len() as isize {
            sent += 1;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(sent)
}
