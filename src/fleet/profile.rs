//! Each simulated device's profile: what kind of host it is (cores, memory, mounts,
//! interfaces, sensors), how its CPU and memory wander, and which class it is in
//! (normal, or crossing the alert or critical threshold now and then, or unreachable or
//! slow for a while). A pure function of the seed and the device's index.

use serde::Serialize;

/// The seed when `--seed` is not given: runs without one agree with each other.
pub const DEFAULT_SEED: u64 = 2024;

/// Share of devices whose CPU and memory cross the alert threshold (70%) in episodes.
pub const ALERT_SHARE: f64 = 0.10;
/// Share of devices whose CPU and memory cross the critical threshold (90%) in episodes.
pub const CRITICAL_SHARE: f64 = 0.03;
/// Share of devices that answer 503 in episodes.
pub const UNREACHABLE_SHARE: f64 = 0.02;
/// Share of devices that answer after `--slow-ms` in episodes.
pub const SLOW_SHARE: f64 = 0.02;
/// Share of each cycle an episode lasts: a device of a class other than normal shows
/// its class this share of the time, and is normal the rest.
pub const EPISODE_SHARE: f64 = 0.2;
/// Shortest and longest cycle, in seconds: the period of a device's slow wander and of
/// its episodes (so an episode comes back every 20 to 60 minutes and lasts 4 to 12).
pub const CYCLE_MIN_SECONDS: f64 = 1200.0;
pub const CYCLE_MAX_SECONDS: f64 = 3600.0;
/// Share of devices with temperature sensors (a coretemp chip: the package and one
/// sensor per core).
pub const SENSOR_SHARE: f64 = 0.5;

/// The most cores a device has; sensors and per-core series stay below ten, so their
/// labels sort as numbers do.
pub const MAX_CPUS: usize = 8;
/// Mount points a device may have, in the order node_exporter lists them (by device).
pub const MOUNTS: [Mount; 3] = [
    Mount {
        path: "/",
        device: "/dev/vda1",
        fstype: "ext4",
        disk: 0,
    },
    Mount {
        path: "/boot",
        device: "/dev/vda2",
        fstype: "ext4",
        disk: 0,
    },
    Mount {
        path: "/data",
        device: "/dev/vdb",
        fstype: "xfs",
        disk: 1,
    },
];
/// Block devices, by the `disk` of [`MOUNTS`].
pub const DISKS: [&str; 2] = ["vda", "vdb"];
/// At most this many Ethernet interfaces (`eth0`, `eth1`) besides `lo`.
pub const MAX_INTERFACES: usize = 2;

/// When the first device booted (2025-01-01T00:00:00Z); the others booted within
/// [`BOOT_SPREAD_SECONDS`] after it. Fixed, so readings depend on nothing but the
/// seed, the index and the time.
pub const BOOT_EPOCH: f64 = 1_735_689_600.0;
pub const BOOT_SPREAD_SECONDS: f64 = 30.0 * 86_400.0;

/// CPU around a base of 20–45%, wandering by up to 15 points and jittering by up to
/// 3: at most 63%, below the alert threshold with room.
const CPU_BASE: (f64, f64) = (20.0, 45.0);
const CPU_WANDER_MAX: f64 = 15.0;
/// Memory around 25–50%, wandering by up to 10 points.
const MEMORY_BASE: (f64, f64) = (25.0, 50.0);
const MEMORY_WANDER_MAX: f64 = 10.0;
/// Jitter of CPU (and memory: half of it) in every state, in percentage points.
pub const NOISE_MAX: f64 = 3.0;
/// Periods of the jitter, seconds: fast enough to show from poll to poll.
const NOISE_PERIODS: [(f64, f64); 2] = [(7.0, 13.0), (17.0, 41.0)];
/// Disk usage starts at 10–50% and grows by up to [`DISK_GROWTH_PERCENT`] over a
/// cycle of 2 to 14 days, when a clean-up brings it back: at most 60%, never an alert.
const DISK_BASE: (f64, f64) = (10.0, 50.0);
pub const DISK_GROWTH_PERCENT: f64 = 10.0;
const DISK_CYCLE_SECONDS: (f64, f64) = (2.0 * 86_400.0, 14.0 * 86_400.0);
/// Receive rate of an Ethernet interface, bytes per second (log-uniform).
const RECEIVE_RATE: (f64, f64) = (1e3, 1e6);
/// Periods of network traffic's swing, seconds.
const TRAFFIC_PERIOD: (f64, f64) = (300.0, 3600.0);
/// How far traffic swings around its mean, as a share of it (below 1: rates stay
/// positive, counters only grow).
pub const TRAFFIC_SWING: f64 = 0.5;
/// RAM sizes, GiB.
const MEMORY_GIB: [u64; 5] = [2, 4, 8, 16, 32];
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// The shares of devices in each class other than normal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub alert: f64,
    pub critical: f64,
    pub unreachable: f64,
    pub slow: f64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            alert: ALERT_SHARE,
            critical: CRITICAL_SHARE,
            unreachable: UNREACHABLE_SHARE,
            slow: SLOW_SHARE,
        }
    }
}

impl Shares {
    /// Reads `ALERT,CRITICAL,UNREACHABLE,SLOW` (fractions 0–1 adding up to at most 1).
    pub fn parse(text: &str) -> Result<Shares, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let [alert, critical, unreachable, slow] = parts[..] else {
            return Err(format!(
                "--shares takes four fractions, ALERT,CRITICAL,UNREACHABLE,SLOW (got {text:?})"
            ));
        };
        let mut values = [0.0; 4];
        for (value, part) in values.iter_mut().zip([alert, critical, unreachable, slow]) {
            *value = part
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=1.0).contains(v))
                .ok_or_else(|| format!("--shares: {part:?} is not a fraction from 0 to 1"))?;
        }
        if values.iter().sum::<f64>() > 1.0 {
            return Err(format!("--shares add up to more than 1 (got {text:?})"));
        }
        let [alert, critical, unreachable, slow] = values;
        Ok(Shares {
            alert,
            critical,
            unreachable,
            slow,
        })
    }
}

/// What a device does in its episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Never crosses a threshold, always answers at once.
    Normal,
    /// CPU and memory between the alert and critical thresholds in episodes.
    Alert,
    /// CPU and memory above the critical threshold in episodes.
    Critical,
    /// Answers 503 in episodes.
    Unreachable,
    /// Answers after `--slow-ms` in episodes.
    Slow,
}

/// A mount point a device may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub path: &'static str,
    pub device: &'static str,
    pub fstype: &'static str,
    /// Index into [`DISKS`].
    pub disk: usize,
}

/// One sine term: `amplitude · sin(omega · s + phase)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Harmonic {
    pub amplitude: f64,
    /// Radians per second.
    pub omega: f64,
    pub phase: f64,
}

impl Harmonic {
    pub fn value(&self, s: f64) -> f64 {
        self.amplitude * (self.omega * s + self.phase).sin()
    }

    /// The integral of [`Harmonic::value`] from 0 to `s`.
    pub fn integral(&self, s: f64) -> f64 {
        self.amplitude * (self.phase.cos() - (self.omega * s + self.phase).cos()) / self.omega
    }
}

/// A percentage that wanders around `base`: slow terms whose periods divide the
/// device's cycle, and fast jitter. Every period divides the cycle, so the whole is
/// periodic in it and its integral over any window of an episode is the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wander {
    pub base: f64,
    pub slow: [Harmonic; 2],
    pub noise: [Harmonic; 2],
}

impl Wander {
    pub fn value(&self, s: f64) -> f64 {
        self.base + self.slow_value(s) + self.noise_value(s)
    }

    pub fn integral(&self, s: f64) -> f64 {
        self.base * s + self.slow_integral(s) + self.noise_integral(s)
    }

    pub fn slow_value(&self, s: f64) -> f64 {
        self.slow.iter().map(|h| h.value(s)).sum()
    }

    pub fn slow_integral(&self, s: f64) -> f64 {
        self.slow.iter().map(|h| h.integral(s)).sum()
    }

    pub fn noise_value(&self, s: f64) -> f64 {
        self.noise.iter().map(|h| h.value(s)).sum()
    }

    pub fn noise_integral(&self, s: f64) -> f64 {
        self.noise.iter().map(|h| h.integral(s)).sum()
    }
}

/// A file system's size and how full it gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Volume {
    pub size_bytes: f64,
    /// Usage, percent (as `df` counts it), at the start of its growth cycle.
    pub base_percent: f64,
    pub cycle_seconds: f64,
    /// Seconds into the cycle at boot.
    pub offset_seconds: f64,
}

/// An Ethernet interface's traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Mean receive rate, bytes per second.
    pub receive_rate: f64,
    /// Transmit rate as a share of the receive rate.
    pub transmit_share: f64,
    /// The swing of both rates around their means (amplitude [`TRAFFIC_SWING`]).
    pub swing: Harmonic,
}

impl Link {
    /// Bytes received from boot to `s` seconds after it.
    pub fn received(&self, s: f64) -> f64 {
        self.receive_rate * (s + self.swing.integral(s))
    }

    pub fn transmitted(&self, s: f64) -> f64 {
        self.received(s) * self.transmit_share
    }
}

/// One device's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub index: usize,
    pub class: Class,
    /// Unix seconds.
    pub boot_time: f64,
    pub cycle_seconds: f64,
    /// Where in each cycle the episode starts, seconds after the cycle's start.
    pub episode_start: f64,
    pub episode_seconds: f64,
    pub cpus: usize,
    /// Each core's share of the busy time, around 1 (they add up to `cpus`).
    pub core_weights: [f64; MAX_CPUS],
    pub cpu_mhz: u64,
    pub cpu: Wander,
    pub memory: Wander,
    pub memory_bytes: f64,
    pub swap_bytes: f64,
    /// How many of [`MOUNTS`] it has (the first ones).
    pub mounts: usize,
    pub volumes: [Volume; MOUNTS.len()],
    /// How many Ethernet interfaces, 1 or 2.
    pub interfaces: usize,
    pub links: [Link; MAX_INTERFACES],
    /// Temperature sensors: none, or the package and one per core.
    pub sensors: usize,
    /// How busy the host is in everything not modelled one by one (context switches,
    /// page faults, …), as a factor of the reference scrape's rates.
    pub activity: f64,
}

/// A device's fixed layout: what decides which series its node_exporter text has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub cpus: usize,
    pub interfaces: usize,
    pub mounts: usize,
    pub sensors: usize,
}

impl Profile {
    /// The profile of device `index` of a fleet seeded with `seed`.
    pub fn of(seed: u64, shares: &Shares, index: usize) -> Profile {
        let mut draw = Draws::new(seed, index);
        let class = {
            let u = draw.unit();
            let mut edge = 0.0;
            let mut class = Class::Normal;
            for (share, candidate) in [
                (shares.alert, Class::Alert),
                (shares.critical, Class::Critical),
                (shares.unreachable, Class::Unreachable),
                (shares.slow, Class::Slow),
            ] {
                edge += share;
                if u < edge {
                    class = candidate;
                    break;
                }
            }
            class
        };
        let boot_time = (BOOT_EPOCH + draw.range(0.0, BOOT_SPREAD_SECONDS)).floor();
        let cycle_seconds = draw.range(CYCLE_MIN_SECONDS, CYCLE_MAX_SECONDS).round();
        let episode_seconds = (cycle_seconds * EPISODE_SHARE).round();
        let episode_start = draw.range(0.0, cycle_seconds).floor();
        let cpus = [1, 2, 2, 4, 4, 8][draw.below(6)];
        let mut core_weights = [1.0; MAX_CPUS];
        // Up to 2% apart: a core at 98% busy stays below 100%.
        for weight in core_weights.iter_mut().take(cpus) {
            *weight = draw.range(0.98, 1.02);
        }
        let mean = core_weights[..cpus].iter().sum::<f64>() / cpus as f64;
        for weight in core_weights.iter_mut().take(cpus) {
            *weight /= mean;
        }
        let cpu_mhz = 100 * draw.range(18.0, 36.0).round() as u64;
        let cpu = wander(
            &mut draw,
            cycle_seconds,
            CPU_BASE,
            CPU_WANDER_MAX,
            NOISE_MAX,
        );
        let memory = wander(
            &mut draw,
            cycle_seconds,
            MEMORY_BASE,
            MEMORY_WANDER_MAX,
            NOISE_MAX / 2.0,
        );
        let memory_bytes = MEMORY_GIB[draw.below(MEMORY_GIB.len())] as f64 * GIB;
        let swap_bytes = if draw.unit() < 0.5 {
            0.0
        } else {
            (memory_bytes / 2.0).min(4.0 * GIB)
        };
        let mounts = 1 + draw.below(MOUNTS.len());
        let mut volumes = [Volume {
            size_bytes: 0.0,
            base_percent: 0.0,
            cycle_seconds: 1.0,
            offset_seconds: 0.0,
        }; MOUNTS.len()];
        for (i, volume) in volumes.iter_mut().enumerate() {
            let size_gib = match i {
                0 => draw.range(20.0, 500.0).round(),
                1 => 1.0,
                _ => draw.range(100.0, 4000.0).round(),
            };
            let cycle_seconds = draw.range(DISK_CYCLE_SECONDS.0, DISK_CYCLE_SECONDS.1);
            *volume = Volume {
                size_bytes: size_gib * GIB,
                base_percent: draw.range(DISK_BASE.0, DISK_BASE.1),
                cycle_seconds,
                offset_seconds: draw.range(0.0, cycle_seconds),
            };
        }
        let interfaces = 1 + draw.below(MAX_INTERFACES);
        let mut links = [Link {
            receive_rate: 0.0,
            transmit_share: 0.0,
            swing: Harmonic {
                amplitude: 0.0,
                omega: 1.0,
                phase: 0.0,
            },
        }; MAX_INTERFACES];
        for link in &mut links {
            let period = draw.range(TRAFFIC_PERIOD.0, TRAFFIC_PERIOD.1);
            *link = Link {
                receive_rate: draw.log_range(RECEIVE_RATE.0, RECEIVE_RATE.1),
                transmit_share: draw.range(0.2, 1.0),
                swing: Harmonic {
                    amplitude: TRAFFIC_SWING,
                    omega: std::f64::consts::TAU / period,
                    phase: draw.range(0.0, std::f64::consts::TAU),
                },
            };
        }
        let sensors = if draw.unit() < SENSOR_SHARE {
            cpus + 1
        } else {
            0
        };
        let activity = draw.range(0.5, 2.0);
        Profile {
            index,
            class,
            boot_time,
            cycle_seconds,
            episode_start,
            episode_seconds,
            cpus,
            core_weights,
            cpu_mhz,
            cpu,
            memory,
            memory_bytes,
            swap_bytes,
            mounts,
            volumes,
            interfaces,
            links,
            sensors,
            activity,
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            cpus: self.cpus,
            interfaces: self.interfaces,
            mounts: self.mounts,
            sensors: self.sensors,
        }
    }

    /// Whether `s` seconds after boot falls in one of the device's episodes. The
    /// first starts `episode_start` seconds after boot, then one every cycle.
    pub fn in_episode(&self, s: f64) -> bool {
        s >= self.episode_start
            && (s - self.episode_start).rem_euclid(self.cycle_seconds) < self.episode_seconds
    }
}

/// A wander around a base drawn from `base`, slow terms adding up to at most
/// `wander_max` and jitter to at most `noise_max`, all periodic in `cycle`.
fn wander(
    draw: &mut Draws,
    cycle: f64,
    base: (f64, f64),
    wander_max: f64,
    noise_max: f64,
) -> Wander {
    let base = draw.range(base.0, base.1);
    let tau = std::f64::consts::TAU;
    let first = draw.range(0.3, 0.7) * wander_max;
    // The cycle itself and a third of it: one slow swell and a shorter one.
    let slow = [(1.0, first), (3.0, wander_max - first)].map(|(n, amplitude)| Harmonic {
        amplitude,
        omega: tau * n / cycle,
        phase: draw.range(0.0, tau),
    });
    let first_noise = draw.range(0.3, 0.7) * noise_max;
    let noise = [
        (NOISE_PERIODS[0], first_noise),
        (NOISE_PERIODS[1], noise_max - first_noise),
    ]
    .map(|((shortest, longest), amplitude)| {
        // A whole number of periods per cycle, so the jitter is periodic in it too.
        let n = (cycle / draw.range(shortest, longest)).round().max(1.0);
        Harmonic {
            amplitude,
            omega: tau * n / cycle,
            phase: draw.range(0.0, tau),
        }
    });
    Wander { base, slow, noise }
}

/// The random draws of one device: a SplitMix64 stream keyed by seed and index.
pub struct Draws {
    state: u64,
}

impl Draws {
    pub fn new(seed: u64, index: usize) -> Draws {
        Draws {
            state: mix(seed ^ mix(index as u64)),
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Log-uniform in [low, high).
    pub fn log_range(&mut self, low: f64, high: f64) -> f64 {
        (low.ln() + (high.ln() - low.ln()) * self.unit()).exp()
    }

    /// Uniform among 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

/// SplitMix64's increment.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The top 53 bits of `x` as a fraction in [0, 1).
pub fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_is_a_function_of_seed_and_index() {
        let shares = Shares::default();
        for index in [0, 1, 17, 99_999] {
            assert_eq!(
                Profile::of(7, &shares, index),
                Profile::of(7, &shares, index)
            );
        }
        assert_ne!(Profile::of(7, &shares, 3), Profile::of(8, &shares, 3));
        assert_ne!(Profile::of(7, &shares, 3), Profile::of(7, &shares, 4));
    }

    #[test]
    fn classes_come_in_the_documented_shares() {
        const DEVICES: usize = 1000;
        // Three standard deviations of a binomial share, and a point for small shares.
        let tolerance = |share: f64| 3.0 * (share * (1.0 - share) / DEVICES as f64).sqrt() + 0.01;
        for seed in [DEFAULT_SEED, 1, 2] {
            let shares = Shares::default();
            let mut counts = std::collections::HashMap::new();
            for index in 0..DEVICES {
                *counts
                    .entry(Profile::of(seed, &shares, index).class)
                    .or_insert(0usize) += 1;
            }
            let normal = 1.0 - ALERT_SHARE - CRITICAL_SHARE - UNREACHABLE_SHARE - SLOW_SHARE;
            for (class, share) in [
                (Class::Normal, normal),
                (Class::Alert, ALERT_SHARE),
                (Class::Critical, CRITICAL_SHARE),
                (Class::Unreachable, UNREACHABLE_SHARE),
                (Class::Slow, SLOW_SHARE),
            ] {
                let seen = counts.get(&class).copied().unwrap_or(0) as f64 / DEVICES as f64;
                assert!(
                    (seen - share).abs() <= tolerance(share),
                    "seed {seed}: {class:?} is {seen} of the fleet, documented {share}"
                );
            }
        }
    }

    #[test]
    fn other_shares_are_honoured_and_bad_ones_refused() {
        let calm = Shares::parse("0,0,0,0").unwrap();
        assert!((0..500).all(|i| Profile::of(1, &calm, i).class == Class::Normal));
        let all_slow = Shares::parse("0, 0, 0, 1").unwrap();
        assert!((0..500).all(|i| Profile::of(1, &all_slow, i).class == Class::Slow));
        for bad in [
            "",
            "0.1,0.1,0.1",
            "0.5,0.5,0.5,0",
            "-0.1,0,0,0",
            "x,0,0,0",
            "NaN,0,0,0",
        ] {
            assert!(Shares::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layouts_stay_within_their_bounds() {
        let shares = Shares::default();
        for index in 0..2000 {
            let p = Profile::of(DEFAULT_SEED, &shares, index);
            assert!((1..=MAX_CPUS).contains(&p.cpus), "{p:?}");
            assert!((1..=MOUNTS.len()).contains(&p.mounts), "{p:?}");
            assert!((1..=MAX_INTERFACES).contains(&p.interfaces), "{p:?}");
            assert!(p.sensors == 0 || p.sensors == p.cpus + 1, "{p:?}");
            let weights = &p.core_weights[..p.cpus];
            assert!((weights.iter().sum::<f64>() - p.cpus as f64).abs() < 1e-9);
            assert!(weights.iter().all(|w| (0.97..=1.03).contains(w)), "{p:?}");
            assert!(p.episode_seconds < p.cycle_seconds);
        }
    }

    #[test]
    fn a_harmonic_integrates_to_its_closed_form() {
        let h = Harmonic {
            amplitude: 3.0,
            omega: 0.37,
            phase: 1.1,
        };
        let (steps, end) = (100_000, 40.0);
        let dt = end / steps as f64;
        let numeric: f64 = (0..steps)
            .map(|k| h.value((k as f64 + 0.5) * dt) * dt)
            .sum();
        assert!((numeric - h.integral(end)).abs() < 1e-6, "{numeric}");
    }
}
