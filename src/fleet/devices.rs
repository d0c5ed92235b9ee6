//! The fleet's device list as the body of the bulk API (`POST /api/v1/devices/bulk`):
//! `{"devices": [{"name": "fleet-00000", "address": "http://HOST:PORT/d/0/metrics.json",
//! "kind": "agent"}, …]}`, served at `GET /devices.json` and written to a file at start.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use crate::domain::DeviceKind;

/// The name of device `index`: `fleet-00042`. Five digits keep 100,000 names in order.
pub fn device_name(index: usize) -> String {
    format!("fleet-{index:05}")
}

/// `http://HOST:PORT` of a fleet bound to `bound`: `advertise` as the host when given,
/// else the bound address (loopback when bound to every interface).
pub fn base_url(advertise: Option<&str>, bound: SocketAddr) -> String {
    let port = bound.port();
    match advertise {
        // An IPv6 literal goes in brackets.
        Some(host) if host.contains(':') && !host.starts_with('[') => {
            format!("http://[{host}]:{port}")
        }
        Some(host) => format!("http://{host}:{port}"),
        None => {
            let ip = match bound.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, port))
        }
    }
}

/// The path a device of `kind` is polled at.
fn document_path(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Prometheus => "metrics",
        _ => "metrics.json",
    }
}

/// The list of `count` devices at `base` (see [`base_url`]), each of `kind`, with
/// `company_id` on each when given. Written as it is serialised, not held whole.
#[derive(Debug, Clone, Copy)]
pub struct DeviceList<'a> {
    pub base: &'a str,
    pub count: usize,
    pub kind: DeviceKind,
    pub company_id: Option<i64>,
}

/// One device of the list.
#[derive(Serialize)]
struct Entry {
    name: String,
    address: String,
    kind: DeviceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_id: Option<i64>,
}

impl Serialize for DeviceList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Devices<'a>(&'a DeviceList<'a>);
        impl Serialize for Devices<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let list = self.0;
                let path = document_path(list.kind);
                serializer.collect_seq((0..list.count).map(|index| Entry {
                    name: device_name(index),
                    address: format!("{}/d/{index}/{path}", list.base),
                    kind: list.kind,
                    company_id: list.company_id,
                }))
            }
        }
        let mut body = serializer.serialize_struct("DeviceList", 1)?;
        body.serialize_field("devices", &Devices(self))?;
        body.end()
    }
}

impl DeviceList<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising strings and integers into memory cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Writes the list to `path` whole: into a file beside it first, then renamed, so
    /// a reader never sees half a list.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        std::fs::write(&partial, self.to_json())?;
        std::fs::rename(&partial, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_list_is_the_bulk_apis_body() {
        let list = DeviceList {
            base: "http://127.0.0.1:9200",
            count: 2,
            kind: DeviceKind::Agent,
            company_id: None,
        };
        let body: Value = serde_json::from_slice(&list.to_json()).unwrap();
        assert_eq!(
            body,
            json!({"devices": [
                {"name": "fleet-00000", "address": "http://127.0.0.1:9200/d/0/metrics.json", "kind": "agent"},
                {"name": "fleet-00001", "address": "http://127.0.0.1:9200/d/1/metrics.json", "kind": "agent"},
            ]})
        );
        let list = DeviceList {
            kind: DeviceKind::Prometheus,
            company_id: Some(7),
            count: 1,
            ..list
        };
        let body: Value = serde_json::from_slice(&list.to_json()).unwrap();
        assert_eq!(
            body["devices"][0],
            json!({"name": "fleet-00000", "address": "http://127.0.0.1:9200/d/0/metrics", "kind": "prometheus", "company_id": 7})
        );
    }

    #[test]
    fn the_base_url_names_a_host_a_client_can_reach() {
        let bound: SocketAddr = "0.0.0.0:9200".parse().unwrap();
        assert_eq!(base_url(None, bound), "http://127.0.0.1:9200");
        assert_eq!(
            base_url(None, "[::]:80".parse().unwrap()),
            "http://[::1]:80"
        );
        assert_eq!(
            base_url(None, "10.0.0.5:1".parse().unwrap()),
            "http://10.0.0.5:1"
        );
        assert_eq!(base_url(Some("sim.lan"), bound), "http://sim.lan:9200");
        assert_eq!(base_url(Some("fd00::1"), bound), "http://[fd00::1]:9200");
    }
}
