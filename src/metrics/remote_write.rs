//! Prometheus remote write 1.0 (<https://prometheus.io/docs/specs/remote_write_spec/>):
//! a `WriteRequest` protobuf of time series, each its labels sorted by name (`__name__`
//! among them) and its samples in time order, compressed with snappy's block format.
//! Device series are named as on `/metrics` (`series::device_series`).

use std::collections::HashMap;

use super::series;

/// The request body's content type, encoding and the protocol's version header.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
pub const CONTENT_ENCODING: &str = "snappy";
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub const VERSION: &str = "0.1.0";

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The device a reading is of: the labels that say whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLabels {
    pub device_id: i64,
    /// `None` for a device deleted since: its id alone names it.
    pub names: Option<(String, String)>,
}

/// A request being put together: one time series per device and series, with every
/// sample given for it.
#[derive(Default)]
pub struct RequestBuilder {
    request: WriteRequest,
    /// Device → series key → its time series' place in the request.
    places: HashMap<i64, HashMap<String, usize>>,
    samples: usize,
}

impl RequestBuilder {
    /// Adds the reading `value` of `device`'s series `key` (as Vigil names it) at
    /// `at_ms`. Readings of one series must come in time order.
    pub fn add(&mut self, device: &DeviceLabels, key: &str, at_ms: i64, value: f64) {
        let sample = Sample {
            value,
            timestamp: at_ms,
        };
        self.samples += 1;
        let places = self.places.entry(device.device_id).or_default();
        if let Some(&at) = places.get(key) {
            self.request.timeseries[at].samples.push(sample);
            return;
        }
        let id = device.device_id.to_string();
        let mut ours: Vec<(&str, &str)> = Vec::with_capacity(3);
        if let Some((device, company)) = &device.names {
            ours.push(("device", device));
            ours.push(("company", company));
        }
        ours.push(("device_id", &id));
        let (family, own) = series::device_series(&ours, key);
        let mut labels: Vec<Label> = ours
            .iter()
            .map(|(name, value)| (*name, *value))
            .chain(
                own.iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            )
            .chain([("__name__", family.as_str())])
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| Label {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        places.insert(key.to_string(), self.request.timeseries.len());
        self.request.timeseries.push(TimeSeries {
            labels,
            samples: vec![sample],
        });
    }

    /// Samples added so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The request's body: the protobuf, compressed.
    pub fn finish(self) -> Result<Vec<u8>, snap::Error> {
        let encoded = prost::Message::encode_to_vec(&self.request);
        snap::raw::Encoder::new().compress_vec(&encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &[u8]) -> WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        <WriteRequest as prost::Message>::decode(raw.as_slice()).unwrap()
    }

    fn labels(series: &TimeSeries) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn each_series_gets_sorted_labels_and_its_samples_in_order() {
        let web = DeviceLabels {
            device_id: 7,
            names: Some(("web-1".into(), "acme".into())),
        };
        let gone = DeviceLabels {
            device_id: 9,
            names: None,
        };
        let mut builder = RequestBuilder::default();
        builder.add(&web, "cpu_usage_percent", 1_000, 12.5);
        builder.add(&web, r#"node_network_up{device="eth0"}"#, 1_000, 1.0);
        builder.add(&web, "cpu_usage_percent", 2_000, 13.5);
        builder.add(&gone, "up", 2_000, 1.0);
        assert_eq!(builder.samples(), 4);
        let request = decode(&builder.finish().unwrap());
        assert_eq!(request.timeseries.len(), 3);
        let cpu = &request.timeseries[0];
        assert_eq!(
            labels(cpu),
            [
                ("__name__", "vigil_device_cpu_usage_percent"),
                ("company", "acme"),
                ("device", "web-1"),
                ("device_id", "7"),
            ]
        );
        let times: Vec<(i64, f64)> = cpu.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(times, [(1_000, 12.5), (2_000, 13.5)]);
        assert_eq!(
            labels(&request.timeseries[1]),
            [
                ("__name__", "vigil_device_node_network_up"),
                ("company", "acme"),
                ("device", "web-1"),
                ("device_id", "7"),
                ("exported_device", "eth0"),
            ]
        );
        assert_eq!(
            labels(&request.timeseries[2]),
            [("__name__", "vigil_device_up"), ("device_id", "9")]
        );
    }
}
