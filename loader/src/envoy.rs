//! Finding and talking to an Envoy binary: `--envoy`, `ENVOY_BIN`, `func-e`
//! on PATH (through `func-e run`), or `envoy` on PATH; plus a tiny admin
//! client for readiness and listener addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// How to start Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyCmd {
    /// Program to run.
    pub program: PathBuf,
    /// Arguments before Envoy's own (`run` for func-e).
    pub prefix: Vec<String>,
    /// Where it was found, for the user.
    pub source: &'static str,
}

impl std::fmt::Display for EnvoyCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program.display())?;
        for p in &self.prefix {
            write!(f, " {p}")?;
        }
        write!(f, " (from {})", self.source)
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Finds Envoy: `flag`, then `ENVOY_BIN`, then `func-e`, then `envoy` on PATH.
pub fn find(flag: Option<&Path>) -> Result<EnvoyCmd> {
    let direct = |program: PathBuf, source| EnvoyCmd {
        program,
        prefix: vec![],
        source,
    };
    if let Some(p) = flag {
        return Ok(direct(p.to_path_buf(), "--envoy"));
    }
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        return Ok(direct(p.into(), "ENVOY_BIN"));
    }
    if let Some(p) = on_path("func-e") {
        return Ok(EnvoyCmd {
            program: p,
            prefix: vec!["run".into()],
            source: "func-e on PATH",
        });
    }
    if let Some(p) = on_path("envoy") {
        return Ok(direct(p, "envoy on PATH"));
    }
    Err(Error::NoEnvoy)
}

/// Where the filter is: `flag`, else the usual build output relative to the
/// working directory or to this executable (`target/debug/edge-hmac` →
/// `target/wasm32-wasip1/release/edge_hmac_filter.wasm`).
pub fn find_wasm(flag: Option<&Path>) -> Result<PathBuf> {
    find_build(
        flag,
        "wasm32-wasip1/release/edge_hmac_filter.wasm",
        Error::NoWasm,
    )
}

/// The native module: `flag`, else `target/module/libedge-hmac.so` (from
/// the working directory, then next to this binary's target directory),
/// made absolute (Envoy loads it by path).
pub fn find_module(flag: Option<&Path>) -> Result<PathBuf> {
    let found = find_build(flag, "module/libedge-hmac.so", Error::NoModule)?;
    Ok(std::fs::canonicalize(&found).unwrap_or(found))
}

fn find_build(flag: Option<&Path>, rel: &str, missing: fn(PathBuf) -> Error) -> Result<PathBuf> {
    if let Some(p) = flag {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(missing(p.to_path_buf()))
        };
    }
    let mut candidates = vec![PathBuf::from("target").join(rel)];
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe.parent().and_then(Path::parent)
    {
        candidates.push(target.join(rel));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .ok_or_else(|| missing(candidates[0].clone()))
}

/// GETs `path` from an Envoy admin interface: (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let fut = async {
        let stream = TcpStream::connect(admin).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| io(&e))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", admin.to_string())
            .body(Empty::new())
            .map_err(|e| io(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| io(&e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "admin timeout"))?
}

/// The admin's view: state and restart epoch, from `/server_info`.
pub async fn server_info(admin: SocketAddr) -> Option<(String, u64)> {
    let (status, body) = admin_get(admin, "/server_info").await.ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let state = v["state"].as_str()?.to_owned();
    let epoch = v["command_line_options"]["restart_epoch"]
        .as_u64()
        .unwrap_or(0);
    Some((state, epoch))
}

/// A hot restart still draining: the previous epoch is alive, and Envoy
/// adds its gauges to this epoch's until it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Draining {
    /// This process's restart epoch.
    pub epoch: u64,
    /// Seconds at most until the previous epoch is shut down
    /// (`--parent-shutdown-time-s` minus this epoch's uptime).
    pub seconds_left: u64,
}

/// Whether the Envoy at `admin` is a hot restart whose parent may still be
/// draining, from `/server_info` (`None` when not, or not readable).
pub async fn draining(admin: SocketAddr) -> Option<Draining> {
    let (status, body) = admin_get(admin, "/server_info").await.ok()?;
    if status != 200 {
        return None;
    }
    draining_from(&serde_json::from_str(&body).ok()?)
}

/// [`draining`] from a parsed `/server_info`.
pub fn draining_from(info: &serde_json::Value) -> Option<Draining> {
    let seconds = |v: &serde_json::Value| -> Option<u64> {
        v.as_str()?
            .strip_suffix('s')?
            .split('.')
            .next()?
            .parse()
            .ok()
    };
    let options = &info["command_line_options"];
    let epoch = options["restart_epoch"].as_u64().filter(|e| *e > 0)?;
    let shutdown = seconds(&options["parent_shutdown_time"])?;
    let uptime = seconds(&info["uptime_current_epoch"])?;
    let seconds_left = shutdown.checked_sub(uptime).filter(|s| *s > 0)?;
    Some(Draining {
        epoch,
        seconds_left,
    })
}

/// Bound addresses of the listeners, by name.
pub async fn listeners(admin: SocketAddr) -> Vec<(String, SocketAddr)> {
    let Ok((200, body)) = admin_get(admin, "/listeners?format=json").await else {
        return vec![];
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
        return vec![];
    };
    v["listener_statuses"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| {
                    let sa = &l["local_address"]["socket_address"];
                    let addr =
                        format!("{}:{}", sa["address"].as_str()?, sa["port_value"].as_u64()?);
                    Some((l["name"].as_str()?.to_owned(), addr.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}
