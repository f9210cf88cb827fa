//! The fabric's bookkeeping, and its forwarding through real network namespaces: each
//! "sandbox" is a process started by `unshare -n` (a namespace with only loopback), and
//! clients run inside one with `nsenter -n`. Those tests need root and util-linux's
//! `unshare`/`nsenter`, `ip` and perl; without them they say so and pass, unless
//! DEVBOX_REQUIRE_ENGINES=1 makes that a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Stdio};
use std::time::Duration;

use nix::unistd::Pid;

use super::{Fabric, Publish, ServiceNet};
use crate::config::model::Protocol;

fn svc(name: &str, networks: &[&str], ports: &[u16]) -> ServiceNet {
    ServiceNet {
        name: name.into(),
        aliases: Vec::new(),
        networks: networks.iter().map(|n| n.to_string()).collect(),
        ports: ports.to_vec(),
        publish: Vec::new(),
    }
}

fn publish(host_port: u16, container_port: u16, protocol: Protocol) -> Publish {
    Publish {
        host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host_port,
        container_port,
        protocol,
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

#[test]
fn addresses_follow_declaration_and_survive_a_new_declaration() {
    let f = Fabric::new();
    for n in ["a", "b", "c"] {
        f.declare(svc(n, &[], &[80]));
    }
    assert_eq!(f.address("a"), Some(ip(2)));
    assert_eq!(f.address("b"), Some(ip(3)));
    assert_eq!(f.address("c"), Some(ip(4)));
    f.declare(svc("b", &["other"], &[81]));
    assert_eq!(f.address("b"), Some(ip(3)));
    f.forget("a");
    assert_eq!(f.address("a"), None);
    // The freed address is the lowest free one again.
    f.declare(svc("d", &[], &[]));
    assert_eq!(f.address("d"), Some(ip(2)));
}

#[test]
fn hosts_list_own_names_then_the_peers_sharing_a_network() {
    let f = Fabric::new();
    let mut web = svc("web", &[], &[80]);
    web.aliases = vec!["www".into()];
    f.declare(web);
    let mut db = svc("db", &["back"], &[5432]);
    db.aliases = vec!["postgres".into()];
    f.declare(db);
    f.declare(svc("api", &["back", "default"], &[8080]));
    f.declare(svc("loner", &["elsewhere"], &[1]));
    let own = |n: &str| (n.to_string(), Ipv4Addr::LOCALHOST);
    let peer = |n: &str, k| (n.to_string(), ip(k));
    assert_eq!(
        f.hosts_for("api"),
        vec![
            own("api"),
            peer("web", 2),
            peer("www", 2),
            peer("db", 3),
            peer("postgres", 3)
        ]
    );
    assert_eq!(
        f.hosts_for("web"),
        vec![own("web"), own("www"), peer("api", 4)]
    );
    assert_eq!(f.hosts_for("loner"), vec![own("loner")]);
    assert_eq!(f.hosts_for("nobody"), vec![]);
}

#[tokio::test]
async fn attaching_refuses_udp_undeclared_services_and_a_dead_sandbox() {
    let f = Fabric::new();
    let mut dns = svc("dns", &[], &[53]);
    dns.publish = vec![publish(5353, 53, Protocol::Udp)];
    f.declare(dns);
    // Refused before anything is bound, so our own pid is a safe stand-in.
    let e = f.attach("dns", Pid::this()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "dns publishes 127.0.0.1:5353/udp: the native engine forwards tcp ports only"
    );
    let e = f.attach("ghost", Pid::this()).await.unwrap_err();
    assert_eq!(e.to_string(), "ghost is not declared to the native network");
    f.declare(svc("gone", &[], &[]));
    let mut done = crate::process::command("true").spawn().unwrap();
    done.wait().unwrap();
    let e = f
        .attach("gone", Pid::from_raw(done.id() as i32))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "joining the network namespace of gone's sandbox (/proc/{}/ns/net): No such file or directory (os error 2)",
            done.id()
        )
    );
}

/// Whether the namespace tests can run here; says why not.
fn can_run() -> bool {
    let missing = ["unshare", "nsenter", "ip", "perl"]
        .into_iter()
        .find(|t| crate::process::which(t).is_none());
    let why = if !nix::unistd::Uid::effective().is_root() {
        Some("needs root (network namespaces)".to_string())
    } else {
        missing.map(|t| format!("needs {t}"))
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("DEVBOX_REQUIRE_ENGINES").as_deref() != Ok("1"),
                "{why} (DEVBOX_REQUIRE_ENGINES=1)"
            );
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// Answers each connection, once the client has closed its side, with `NAME:` and what
/// it sent: the answer only comes when half-close gets through.
const SERVER: &str = r#"
my ($port, $name, $addr) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => $addr // "127.0.0.1", LocalPort => $port,
    Listen => 16, ReuseAddr => 1) or die "listen: $!\n";
$| = 1; print "ready\n";
while (my $c = $l->accept) { local $/; my $d = <$c>; print $c "$name:$d"; close $c }
"#;

const IDLE: &str = r#"$| = 1; print "ready\n"; sleep 60"#;

/// Sends a message, closes its writing side, prints what comes back until the end, or the
/// first error (a reset shows on the write or the read, depending on when it arrives).
const CLIENT: &str = r#"
my ($host, $port, $msg) = @ARGV;
$SIG{PIPE} = "IGNORE"; alarm 5;
my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port) or die "connect: $!\n";
my $err;
defined syswrite($s, $msg) or $err = "write: $!";
shutdown($s, 1); local $/; my $r = <$s>;
defined $r or $err //= "read: $!";
print $err // $r;
"#;

/// A process in a network namespace of its own, killed when dropped.
struct Sandbox {
    child: Child,
}

impl Sandbox {
    fn start(script: &str, args: &[&str]) -> Self {
        let mut child = crate::process::command("unshare")
            .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
            .args(["perl", "-MIO::Socket::INET", "-e", script])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting unshare");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the sandbox did not start");
        Self { child }
    }

    fn server(port: u16, name: &str) -> Self {
        Self::start(SERVER, &[&port.to_string(), name])
    }

    fn idle() -> Self {
        Self::start(IDLE, &[])
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a client inside `sandbox`'s namespace got from `addr`: its output, or its error.
async fn client_in(sandbox: &Sandbox, addr: SocketAddr, msg: &str) -> Result<String, String> {
    let mut cmd = crate::process::command("nsenter");
    cmd.args(["-t", &sandbox.pid().to_string(), "-n"])
        .args(["perl", "-MIO::Socket::INET", "-e", CLIENT])
        .args([&addr.ip().to_string(), &addr.port().to_string(), msg]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("running nsenter");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The same, from the host's namespace (this process).
async fn client_on_host(addr: SocketAddr, msg: &str) -> std::io::Result<String> {
    let msg = msg.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(msg.as_bytes())?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r)
    })
    .await
    .unwrap()
}

/// A port free on every address of the host right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    l.local_addr().unwrap().port()
}

fn at(addr: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::from((addr, port))
}

#[tokio::test]
async fn a_peer_is_reached_by_its_address_with_half_close() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    f.declare(svc("server", &[], &[7777]));
    f.declare(svc("client", &[], &[]));
    let server = Sandbox::server(7777, "one");
    let client = Sandbox::idle();
    f.attach("server", server.pid()).await.unwrap();
    f.attach("client", client.pid()).await.unwrap();
    let to = at(f.address("server").unwrap(), 7777);
    assert_eq!(client_in(&client, to, "hello").await.unwrap(), "one:hello");
    // Again, on a second connection through the same listener.
    assert_eq!(client_in(&client, to, "again").await.unwrap(), "one:again");
}

#[tokio::test]
async fn a_peer_not_attached_or_not_listening_resets_and_a_restarted_one_is_reached() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    f.declare(svc("server", &[], &[7777]));
    f.declare(svc("client", &[], &[]));
    let client = Sandbox::idle();
    f.attach("client", client.pid()).await.unwrap();
    let to = at(f.address("server").unwrap(), 7777);
    // Not started yet: accepted and reset at once (the client's alarm would say a hang).
    let got = client_in(&client, to, "early").await.unwrap();
    assert!(got.ends_with(": Connection reset by peer"), "{got}");

    // Attached, but nothing listens on the port inside.
    f.declare(svc("quiet", &[], &[7778]));
    let quiet = Sandbox::idle();
    f.attach("quiet", quiet.pid()).await.unwrap();
    f.detach("client").await;
    f.attach("client", client.pid()).await.unwrap();
    let got = client_in(&client, at(f.address("quiet").unwrap(), 7778), "hush")
        .await
        .unwrap();
    assert!(got.ends_with(": Connection reset by peer"), "{got}");

    let first = Sandbox::server(7777, "one");
    f.attach("server", first.pid()).await.unwrap();
    assert_eq!(client_in(&client, to, "hi").await.unwrap(), "one:hi");

    f.detach("server").await;
    let got = client_in(&client, to, "gone").await.unwrap();
    assert!(got.ends_with(": Connection reset by peer"), "{got}");
    drop(first);

    // A new sandbox of the same service: the client's listener finds it without a restart.
    let second = Sandbox::server(7777, "two");
    f.attach("server", second.pid()).await.unwrap();
    assert_eq!(client_in(&client, to, "hi").await.unwrap(), "two:hi");
}

#[tokio::test]
async fn a_service_on_another_network_is_not_reachable() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    f.declare(svc("server", &["back"], &[7777]));
    f.declare(svc("client", &["front"], &[]));
    let server = Sandbox::server(7777, "one");
    let client = Sandbox::idle();
    f.attach("server", server.pid()).await.unwrap();
    f.attach("client", client.pid()).await.unwrap();
    let to = at(f.address("server").unwrap(), 7777);
    let e = client_in(&client, to, "hi").await.unwrap_err();
    assert!(e.ends_with("connect: Connection refused"), "{e}");
}

#[tokio::test]
async fn a_published_port_is_on_loopback_only_and_detach_frees_it() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    let hp = free_port();
    let mut web = svc("web", &[], &[7777]);
    web.publish = vec![publish(hp, 7777, Protocol::Tcp)];
    f.declare(web);
    let server = Sandbox::server(7777, "web");
    f.attach("web", server.pid()).await.unwrap();
    let on_lo = at(Ipv4Addr::LOCALHOST, hp);
    assert_eq!(client_on_host(on_lo, "hi").await.unwrap(), "web:hi");

    let outside = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .find(|a| !a.is_loopback());
    match outside {
        Some(a) => {
            let e = client_on_host(at(a, hp), "hi").await.unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{a}: {e}");
        }
        None => eprintln!("not checked off loopback: this machine has no other IPv4 address"),
    }

    f.detach("web").await;
    std::net::TcpListener::bind(on_lo).expect("the published port is free after detach");
}

/// Greets each connection at once, then waits for its end.
const GREETER: &str = r#"
my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
    Listen => 16, ReuseAddr => 1) or die "listen: $!\n";
$| = 1; print "ready\n";
while (my $c = $l->accept) { print $c "hello\n"; local $/; my $d = <$c>; close $c }
"#;

#[tokio::test]
async fn detach_ends_the_connections_through_the_sandbox() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    let hp = free_port();
    let mut chat = svc("chat", &[], &[7777]);
    chat.publish = vec![publish(hp, 7777, Protocol::Tcp)];
    f.declare(chat);
    let server = Sandbox::start(GREETER, &["7777"]);
    f.attach("chat", server.pid()).await.unwrap();
    let open = tokio::task::spawn_blocking(move || {
        let mut open = std::net::TcpStream::connect(at(Ipv4Addr::LOCALHOST, hp)).unwrap();
        open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = [0; 6];
        open.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello\n");
        open
    })
    .await
    .unwrap();
    // Through to the server, which would wait for the client for ever.
    f.detach("chat").await;
    let rest = tokio::task::spawn_blocking(move || {
        let mut open = open;
        let mut rest = Vec::new();
        open.read_to_end(&mut rest).map(|_| rest)
    })
    .await
    .unwrap();
    match rest {
        Ok(rest) => assert_eq!(rest, b""),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[tokio::test]
async fn attach_names_a_taken_host_port_and_leaves_nothing_bound() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hp = taken.local_addr().unwrap().port();
    f.declare(svc("server", &[], &[7777]));
    let mut client = svc("client", &[], &[]);
    client.publish = vec![publish(hp, 80, Protocol::Tcp)];
    f.declare(client);
    let server = Sandbox::server(7777, "one");
    let client = Sandbox::idle();
    f.attach("server", server.pid()).await.unwrap();
    let e = f.attach("client", client.pid()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot publish client's port 80 on 127.0.0.1:{hp}: Address already in use (os error 98)"
        )
    );
    // The listener for the peer, bound before the failure, is gone too.
    let to = at(f.address("server").unwrap(), 7777);
    let e = client_in(&client, to, "hi").await.unwrap_err();
    assert!(e.ends_with("connect: Connection refused"), "{e}");

    drop(taken);
    f.attach("client", client.pid()).await.unwrap();
    assert_eq!(client_in(&client, to, "hi").await.unwrap(), "one:hi");
}

#[tokio::test]
async fn a_peer_port_taken_inside_the_sandbox_is_named() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    f.declare(svc("server", &[], &[7777]));
    f.declare(svc("client", &[], &[]));
    let server = Sandbox::server(7777, "one");
    // The client's sandbox already holds the wildcard address on the server's port.
    let client = Sandbox::start(SERVER, &["7777", "client", "0.0.0.0"]);
    f.attach("server", server.pid()).await.unwrap();
    let e = f.attach("client", client.pid()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot listen on 127.0.0.2:7777 inside client's sandbox (the address of server): Address already in use (os error 98)"
    );
}

/// Sinks a bulk transfer (`T`, then answers the byte count) or echoes byte by byte (`P`).
const BENCH_SERVER: &str = r#"
use Socket qw(IPPROTO_TCP TCP_NODELAY);
my ($port) = @ARGV;
my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port,
    Listen => 16, ReuseAddr => 1) or die "listen: $!\n";
$| = 1; print "ready\n";
while (my $c = $l->accept) {
    setsockopt($c, IPPROTO_TCP, TCP_NODELAY, 1);
    sysread($c, my $mode, 1) or next;
    if ($mode eq "T") {
        my ($n, $b) = (0, "");
        while (my $r = sysread($c, $b, 1 << 16)) { $n += $r }
        print $c "$n\n";
    } else {
        while (sysread($c, my $b, 1)) { syswrite($c, $b) }
    }
    close $c;
}
"#;

/// Throughput of one connection (512 MiB), round trip of one byte on an open connection,
/// and connect plus one round trip.
const BENCH_CLIENT: &str = r#"
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);
my ($host, $port) = @ARGV;
sub conn {
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port) or die "connect: $!\n";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1); $s
}
my $s = conn(); syswrite($s, "T");
my ($buf, $n, $total) = ("x" x (1 << 16), 0, 512 << 20);
my $t = time;
while ($n < $total) { $n += syswrite($s, $buf) }
shutdown($s, 1); my $got = <$s>; my $bulk = time - $t;
die "sent $n, received $got" unless $got == $n;
$s = conn(); syswrite($s, "P");
$t = time;
for (1 .. 20000) { syswrite($s, "a"); sysread($s, my $b, 1) }
my $rtt = (time - $t) / 20000; close $s;
$t = time;
for (1 .. 500) { my $c = conn(); syswrite($c, "Pa"); sysread($c, my $b, 1); close $c }
my $connect = (time - $t) / 500;
printf "%.0f MiB/s, round trip %.1f us, connect + round trip %.1f us\n",
    $n / $bulk / 2**20, $rtt * 1e6, $connect * 1e6;
"#;

/// The figures in docs/engines.md ("native engine: networking"): one connection forwarded
/// by the fabric between two sandboxes, against the same client on loopback inside the
/// server's sandbox.
#[tokio::test]
#[ignore = "a measurement, not a check: cargo test --release --lib forwarding_cost -- --ignored --nocapture"]
async fn forwarding_cost() {
    if !can_run() {
        return;
    }
    let f = Fabric::new();
    f.declare(svc("server", &[], &[7777]));
    f.declare(svc("client", &[], &[]));
    let server = Sandbox::start(BENCH_SERVER, &["7777"]);
    let client = Sandbox::idle();
    f.attach("server", server.pid()).await.unwrap();
    f.attach("client", client.pid()).await.unwrap();
    let run = |inside: &Sandbox, addr: SocketAddr| {
        let mut cmd = crate::process::command("nsenter");
        cmd.args(["-t", &inside.pid().to_string(), "-n"])
            .args(["perl", "-MIO::Socket::INET", "-e", BENCH_CLIENT])
            .args([addr.ip().to_string(), addr.port().to_string()]);
        tokio::task::spawn_blocking(move || cmd.output())
    };
    for _ in 0..3 {
        let direct = run(&server, at(Ipv4Addr::LOCALHOST, 7777))
            .await
            .unwrap()
            .unwrap();
        let through = run(&client, at(f.address("server").unwrap(), 7777))
            .await
            .unwrap()
            .unwrap();
        for (what, out) in [("direct loopback", direct), ("through the fabric", through)] {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            print!("{what:>20}: {}", String::from_utf8_lossy(&out.stdout));
        }
    }
}
