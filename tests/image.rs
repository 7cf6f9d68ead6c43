//! The container image (`deploy/image/Containerfile`, built by
//! `scripts/build-image.sh`) works:
//!
//! - the script builds it with buildah (or podman, `BUILDER=podman`) into a
//!   private store, from the debug binary `cargo test` has already built:
//!   the same script and Containerfile as the release image, without a
//!   second release build in the test run;
//! - its configuration runs the exporter as a numeric non-root user, with
//!   the exporter as entrypoint and port 9121 exposed;
//! - its file system holds the binary, exactly the libraries `ldd` lists for
//!   it, the CA bundle and four files under /etc: no shell, nothing else;
//! - exported the way a runtime unpacks it (OCI layout, layers untarred)
//!   and run with `chroot --userspec` as the image's user (running a
//!   container is refused on these machines: `crun: setrlimit
//!   RLIMIT_NPROC`), the entrypoint resolves a host name from the image's
//!   /etc/hosts (glibc's NSS inside the image), accepts a `rediss://` target
//!   (it needs the CA bundle to start) and serves `/metrics` for a real
//!   `redis-server`.
//!
//! Skips with a message when neither buildah nor podman is installed, or
//! when not root (chroot needs it); with `CI=true` both are failures, since
//! scripts/test.sh installs buildah and CI runs as root.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, run_with_deadline, skip, try_http_request, wait_for, RedisServer};

const EXPORTER: &str = env!("CARGO_BIN_EXE_redis-vitals");
const BUILD_DEADLINE: Duration = Duration::from_secs(300);
const TOOL_DEADLINE: Duration = Duration::from_secs(60);
const SCRAPE_DEADLINE: Duration = Duration::from_secs(20);
/// The name the test writes into the image's /etc/hosts: nothing outside the
/// image's file system can resolve it.
const HOSTNAME: &str = "redis-under-test.invalid";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(cmd: Command, timeout: Duration) -> String {
    let desc = format!("{cmd:?}");
    let out = run_with_deadline(cmd, timeout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{desc}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(oci: &Path, digest: &str) -> PathBuf {
    let (algo, hex) = digest.split_once(':').expect("digest algo:hex");
    oci.join("blobs").join(algo).join(hex)
}

/// Every regular file and symlink under `dir`, as absolute image paths.
fn files_under(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_under(&entry.path(), &name, out);
        } else {
            out.push(name);
        }
    }
}

/// The shared libraries (and loader) `ldd` lists for `binary`.
fn ldd_paths(binary: &str) -> Vec<String> {
    let mut cmd = Command::new("ldd");
    cmd.arg(binary);
    let text = run(cmd, TOOL_DEADLINE);
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next().map(str::to_string),
                None => l
                    .split_whitespace()
                    .next()
                    .filter(|p| p.starts_with('/'))
                    .map(str::to_string),
            }
        })
        .filter(|p| p.starts_with('/'))
        .collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn image_builds_and_its_entrypoint_serves_metrics_as_non_root() {
    let builder = match std::env::var("BUILDER") {
        Ok(b) => b,
        Err(_) if found("buildah") => "buildah".into(),
        Err(_) if found("podman") => "podman".into(),
        Err(_) => {
            return skip(
                "neither buildah nor podman is installed (Debian: apt-get install buildah)",
            )
        }
    };
    if !is_root() {
        return skip("not root: the image's file system is run with chroot, which needs root");
    }

    // Build into a private store (vfs works everywhere, overlay needs
    // kernel support) so the test leaves nothing behind.
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let opts = format!(
        "--root {0}/root --runroot {0}/runroot --storage-driver vfs",
        store.display()
    );
    let image = "localhost/redis-vitals:test";
    let mut cmd = Command::new(root().join("scripts/build-image.sh"));
    cmd.env("BINARY", EXPORTER)
        .env("IMAGE", image)
        .env("BUILDER", &builder)
        .env("BUILDER_OPTS", &opts)
        .env("CONTEXT", work.path().join("context"));
    let report = run(cmd, BUILD_DEADLINE);
    eprintln!("{report}");

    // Export it as an OCI layout, the form a registry and a runtime get.
    let oci = work.path().join("oci");
    let mut cmd = Command::new(&builder);
    cmd.args(opts.split_whitespace())
        .arg("push")
        .arg("--quiet")
        .arg(image)
        .arg(format!("oci:{}", oci.display()));
    run(cmd, TOOL_DEADLINE);
    let index = json(&oci.join("index.json"));
    let manifest = json(&blob(
        &oci,
        index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest"),
    ));
    let config = json(&blob(
        &oci,
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ));
    let cfg = &config["config"];

    // Non-root, numeric (runAsNonRoot can verify it), the exporter first.
    let user = cfg["User"].as_str().expect("image sets a User");
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let uid: u32 = uid.parse().expect("numeric uid");
    let gid: u32 = gid.parse().expect("numeric gid");
    assert_ne!(uid, 0, "image runs as root");
    assert_ne!(gid, 0, "image runs with group root");
    let entrypoint: Vec<&str> = cfg["Entrypoint"]
        .as_array()
        .expect("image sets an Entrypoint")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(entrypoint, ["/usr/local/bin/redis-vitals"]);
    assert!(
        cfg["ExposedPorts"].get("9121/tcp").is_some(),
        "9121/tcp not exposed: {cfg}"
    );

    // Unpack the layers in order, as a runtime does.
    let rootfs = work.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    let mut size = 0;
    for layer in manifest["layers"].as_array().expect("layers") {
        size += layer["size"].as_u64().unwrap_or(0);
        let media = layer["mediaType"].as_str().unwrap_or_default();
        let mut cmd = Command::new("tar");
        cmd.arg("-C").arg(&rootfs);
        cmd.arg(if media.ends_with("gzip") {
            "-xzf"
        } else {
            "-xf"
        });
        cmd.arg(blob(&oci, layer["digest"].as_str().unwrap()));
        run(cmd, TOOL_DEADLINE);
    }
    eprintln!("image layers: {size} bytes compressed");

    // Exactly what the Containerfile promises, and no shell.
    let mut files = Vec::new();
    files_under(&rootfs, "", &mut files);
    files.sort();
    let mut expected: Vec<String> = [
        "/usr/local/bin/redis-vitals",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/nsswitch.conf",
        "/etc/passwd",
        "/etc/group",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(ldd_paths(EXPORTER))
    .collect();
    expected.sort();
    assert_eq!(files, expected, "files in the image");
    assert!(!rootfs.join("bin/sh").exists(), "the image has a shell");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/nsswitch.conf")).unwrap(),
        "hosts: files dns\n"
    );

    // A name only the image's /etc/hosts knows (runtimes and the kubelet
    // mount their own /etc/hosts at the same place).
    fs::write(
        rootfs.join("etc/hosts"),
        format!("127.0.0.1 localhost {HOSTNAME}\n"),
    )
    .unwrap();

    let redis = RedisServer::start(&[]);
    let closed = free_port();
    let listen = free_port();
    let mut cmd = Command::new("chroot");
    cmd.arg(format!("--userspec={uid}:{gid}"))
        .arg(&rootfs)
        .args(&entrypoint)
        .arg(format!("--redis.addr=redis://{HOSTNAME}:{}", redis.port))
        // Starting with a rediss:// target and no CA file needs the image's
        // CA bundle: without it the exporter exits at once.
        .arg(format!("--redis.addr=rediss://{HOSTNAME}:{closed}"))
        .arg(format!("--web.listen-address=127.0.0.1:{listen}"))
        // The image's environment only (its PATH also finds chroot).
        .env_clear()
        .envs(cfg["Env"].as_array().into_iter().flatten().filter_map(|v| {
            v.as_str()?
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        }))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("cannot run chroot"));
    let addr = format!("127.0.0.1:{listen}").parse().unwrap();
    let up_line = format!(
        "redis_up{{addr=\"{HOSTNAME}:{}\",cluster=\"\"}} 1",
        redis.port
    );
    let body = wait_for(
        SCRAPE_DEADLINE,
        "the image's exporter to poll redis",
        || {
            if let Some(status) = child.0.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("the image's entrypoint exited ({status}):\n{err}");
            }
            let r = try_http_request(addr, "GET", "/metrics", &[], b"")?;
            let text = r.text();
            if r.status == 200 && text.lines().any(|l| l == up_line) {
                Ok(text)
            } else {
                Err(format!("HTTP {}, no line {up_line:?}", r.status))
            }
        },
    );
    assert!(body.contains("redis_connected_clients"), "{body}");

    // It really runs as the image's user.
    let status = fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse::<u32>().unwrap())
        .collect::<Vec<_>>();
    assert!(uids.iter().all(|&u| u == uid), "uids {uids:?}, want {uid}");
}
