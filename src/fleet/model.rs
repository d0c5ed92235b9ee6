//! A device's readings at a moment: CPU time counters and usage, memory, file
//! systems, network counters, load and temperatures, computed in closed form from its
//! [`Profile`], the time and the state it is forced into (if any). Counters are
//! integrals of the usage curves, so the CPU percentage a scraper derives from two
//! scrapes is the curve's mean between them, and counters never go down.

use serde::{Deserialize, Serialize};

use super::profile::{Class, Profile, DISK_GROWTH_PERCENT, MOUNTS};

/// Vigil's default thresholds, percent: a reading above them is an alert or critical.
pub const ALERT_THRESHOLD: f64 = 70.0;
pub const CRITICAL_THRESHOLD: f64 = 90.0;
/// Where CPU and memory sit in an alert (forced, or an episode): between the
/// thresholds with the jitter's room on both sides.
pub const ALERT_CPU_PERCENT: f64 = 80.0;
pub const ALERT_MEMORY_PERCENT: f64 = 78.0;
/// Where CPU and memory sit when critical: above 90% by more than the jitter, and
/// below 100% by as much (core weights differ by up to 2%).
pub const CRITICAL_CPU_PERCENT: f64 = 95.0;
pub const CRITICAL_MEMORY_PERCENT: f64 = 94.0;
/// The share of the blocks of a file system reserved for root, as ext4 has by default.
pub const RESERVED_SHARE: f64 = 0.05;
/// Share of idle CPU time the kernel counts as iowait.
const IOWAIT_SHARE: f64 = 0.02;
/// How busy time is split among node_exporter's modes (they add up to 1).
const BUSY_MODES: [(CpuMode, f64); 6] = [
    (CpuMode::User, 0.68),
    (CpuMode::System, 0.24),
    (CpuMode::Nice, 0.02),
    (CpuMode::Softirq, 0.03),
    (CpuMode::Steal, 0.03),
    (CpuMode::Irq, 0.0),
];
/// Loopback traffic, bytes per second.
pub const LOOPBACK_RATE: f64 = 200.0;
/// Temperature of an idle core, and degrees per point of CPU usage.
const IDLE_CELSIUS: f64 = 32.0;
const CELSIUS_PER_PERCENT: f64 = 0.45;
/// What the coretemp chip reports as its high and critical marks.
pub const MAX_CELSIUS: f64 = 85.0;
pub const CRITICAL_CELSIUS: f64 = 100.0;
/// The window the agent's usage percentages average over, seconds (its interval).
pub const AGENT_INTERVAL_SECONDS: f64 = 1.0;

/// The state a device is forced into through `PUT /d/{i}/state`, or `auto`: its profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    Auto,
    Normal,
    Alert,
    Critical,
    Unreachable,
    Slow,
}

/// What the CPU and memory follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// The profile: the wander, with the class's episodes.
    Profile,
    /// The wander without episodes.
    Calm,
    /// Held between the alert and critical thresholds, with jitter.
    Alert,
    /// Held above the critical threshold, with jitter.
    Critical,
}

impl Setting {
    pub fn curve(self) -> Curve {
        match self {
            // An unreachable or slow device keeps its readings; it answers differently.
            Setting::Auto | Setting::Unreachable | Setting::Slow => Curve::Profile,
            Setting::Normal => Curve::Calm,
            Setting::Alert => Curve::Alert,
            Setting::Critical => Curve::Critical,
        }
    }
}

/// How a device answers its metrics routes at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Now,
    Slowly,
    /// 503.
    Unavailable,
}

/// The levels CPU and memory hold at in an alert or critical curve.
fn levels(curve: Curve) -> Option<(f64, f64)> {
    match curve {
        Curve::Alert => Some((ALERT_CPU_PERCENT, ALERT_MEMORY_PERCENT)),
        Curve::Critical => Some((CRITICAL_CPU_PERCENT, CRITICAL_MEMORY_PERCENT)),
        Curve::Profile | Curve::Calm => None,
    }
}

/// The curve a profile follows in its episodes.
fn episode_curve(class: Class) -> Option<Curve> {
    match class {
        Class::Alert => Some(Curve::Alert),
        Class::Critical => Some(Curve::Critical),
        Class::Normal | Class::Unreachable | Class::Slow => None,
    }
}

impl Profile {
    /// The curve in force `s` seconds after boot: the episode's or the calm one.
    fn resolve(&self, curve: Curve, s: f64) -> Curve {
        match curve {
            Curve::Profile => match episode_curve(self.class) {
                Some(episode) if self.in_episode(s) => episode,
                _ => Curve::Calm,
            },
            other => other,
        }
    }

    /// Busy share of all cores `s` seconds after boot, percent.
    pub fn cpu_percent(&self, curve: Curve, s: f64) -> f64 {
        match levels(self.resolve(curve, s)) {
            Some((cpu, _)) => cpu + self.cpu.noise_value(s),
            None => self.cpu.value(s),
        }
    }

    /// Memory in use `s` seconds after boot, percent.
    pub fn memory_percent(&self, curve: Curve, s: f64) -> f64 {
        match levels(self.resolve(curve, s)) {
            Some((_, memory)) => memory + self.memory.noise_value(s),
            None => self.memory.value(s),
        }
    }

    /// The integral of [`Profile::cpu_percent`] from boot to `s`, percent-seconds.
    pub fn cpu_integral(&self, curve: Curve, s: f64) -> f64 {
        let s = s.max(0.0);
        if let Some((level, _)) = levels(curve) {
            return level * s + self.cpu.noise_integral(s);
        }
        let calm = self.cpu.integral(s);
        let episode = match curve {
            Curve::Profile => episode_curve(self.class).and_then(levels),
            _ => None,
        };
        let Some((level, _)) = episode else {
            return calm;
        };
        // In an episode the usage is `level + noise` instead of `base + slow + noise`:
        // add the difference over every episode up to `s`. The slow terms are periodic
        // in the cycle, so every whole episode adds the same.
        let gap = |x: f64| (level - self.cpu.base) * x - self.cpu.slow_integral(x);
        let (start, length, cycle) = (self.episode_start, self.episode_seconds, self.cycle_seconds);
        if s < start {
            return calm;
        }
        let whole = ((s - start) / cycle).floor();
        let current = whole * cycle + start;
        let per_episode = gap(start + length) - gap(start);
        calm + whole * per_episode + gap(s.min(current + length)) - gap(current)
    }

    /// Usage of file system `mount` `s` seconds after boot, percent (as `df` counts it).
    pub fn disk_percent(&self, mount: usize, s: f64) -> f64 {
        let volume = &self.volumes[mount];
        let cycles = (s + volume.offset_seconds) / volume.cycle_seconds;
        volume.base_percent + DISK_GROWTH_PERCENT * cycles.fract()
    }

    /// What the device does at `s` seconds after boot under `setting`.
    pub fn answer(&self, setting: Setting, s: f64) -> Answer {
        match setting {
            Setting::Unreachable => Answer::Unavailable,
            Setting::Slow => Answer::Slowly,
            Setting::Normal | Setting::Alert | Setting::Critical => Answer::Now,
            Setting::Auto => match self.class {
                Class::Unreachable if self.in_episode(s) => Answer::Unavailable,
                Class::Slow if self.in_episode(s) => Answer::Slowly,
                _ => Answer::Now,
            },
        }
    }
}

/// Where a device's CPU counters stand when its curve last changed: from then on they
/// grow along the new curve, so a forced state never makes them jump or go back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    /// Seconds after boot.
    pub since: f64,
    /// Busy seconds of all cores together at `since`.
    pub busy: f64,
    pub curve: Curve,
}

impl Anchor {
    /// A device that was never forced: its counters follow its profile from boot.
    pub const BOOT: Anchor = Anchor {
        since: 0.0,
        busy: 0.0,
        curve: Curve::Profile,
    };

    /// Busy seconds of all cores together at `s` (not before `since`).
    pub fn busy(&self, profile: &Profile, s: f64) -> f64 {
        let cores = profile.cpus as f64;
        let grown =
            profile.cpu_integral(self.curve, s) - profile.cpu_integral(self.curve, self.since);
        self.busy + cores * grown.max(0.0) / 100.0
    }

    /// The anchor of a change to `curve` at `s`.
    pub fn switch(&self, profile: &Profile, curve: Curve, s: f64) -> Anchor {
        let s = s.max(self.since);
        Anchor {
            since: s,
            busy: self.busy(profile, s),
            curve,
        }
    }
}

/// The kernel's CPU modes, as node_exporter labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    Idle,
    Iowait,
    Irq,
    Nice,
    Softirq,
    Steal,
    System,
    User,
}

impl CpuMode {
    /// In node_exporter's order (sorted by name).
    pub const ALL: [CpuMode; 8] = [
        CpuMode::Idle,
        CpuMode::Iowait,
        CpuMode::Irq,
        CpuMode::Nice,
        CpuMode::Softirq,
        CpuMode::Steal,
        CpuMode::System,
        CpuMode::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CpuMode::Idle => "idle",
            CpuMode::Iowait => "iowait",
            CpuMode::Irq => "irq",
            CpuMode::Nice => "nice",
            CpuMode::Softirq => "softirq",
            CpuMode::Steal => "steal",
            CpuMode::System => "system",
            CpuMode::User => "user",
        }
    }
}

/// A device's readings at one moment.
#[derive(Debug, Clone)]
pub struct Reading<'p> {
    pub profile: &'p Profile,
    /// Unix seconds.
    pub time: f64,
    /// Seconds since boot.
    pub uptime: f64,
    /// Busy seconds of all cores together since boot.
    pub busy_seconds: f64,
    /// Busy share of all cores over the last [`AGENT_INTERVAL_SECONDS`], percent.
    pub cpu_percent: f64,
    pub memory_percent: f64,
    /// By mount, the first `profile.mounts` of [`MOUNTS`].
    pub disk_percent: [f64; MOUNTS.len()],
    /// Over 1, 5 and 15 minutes; read through [`Reading::load_average`].
    load: [f64; 3],
    /// Degrees of the package sensor; cores read a little below it.
    pub package_celsius: f64,
}

impl<'p> Reading<'p> {
    /// The readings of `profile` at Unix time `time`, counters grown from `anchor`
    /// along the curve `setting` gives.
    pub fn at(profile: &'p Profile, setting: Setting, anchor: &Anchor, time: f64) -> Reading<'p> {
        let uptime = (time - profile.boot_time).max(0.0);
        let curve = setting.curve();
        let busy_seconds = anchor.busy(profile, uptime);
        let window = AGENT_INTERVAL_SECONDS.min(uptime);
        let cpu_percent = if window > 0.0 {
            // Along the current curve, as if it had held the whole window.
            let grown =
                profile.cpu_integral(curve, uptime) - profile.cpu_integral(curve, uptime - window);
            grown / window
        } else {
            profile.cpu_percent(curve, uptime)
        };
        let instant = profile.cpu_percent(curve, uptime);
        let cores = profile.cpus as f64;
        let base = profile.cpu.base;
        let load1 = cores * instant / 100.0;
        let mut disk_percent = [0.0; MOUNTS.len()];
        for (mount, percent) in disk_percent.iter_mut().enumerate() {
            *percent = profile.disk_percent(mount, uptime);
        }
        Reading {
            profile,
            time,
            uptime,
            busy_seconds,
            cpu_percent,
            memory_percent: profile.memory_percent(curve, uptime),
            disk_percent,
            load: [
                load1,
                0.7 * load1 + 0.3 * cores * base / 100.0,
                0.4 * load1 + 0.6 * cores * base / 100.0,
            ],
            package_celsius: IDLE_CELSIUS + CELSIUS_PER_PERCENT * instant,
        }
    }

    /// Seconds core `cpu` spent in `mode` since boot. Each core is busy its weight's
    /// share of the total; the modes of a core add up to the uptime.
    pub fn cpu_seconds(&self, cpu: usize, mode: CpuMode) -> f64 {
        let profile = self.profile;
        let busy = self.busy_seconds * profile.core_weights[cpu] / profile.cpus as f64;
        let idle = (self.uptime - busy).max(0.0);
        match mode {
            CpuMode::Idle => idle * (1.0 - IOWAIT_SHARE),
            CpuMode::Iowait => idle * IOWAIT_SHARE,
            busy_mode => {
                busy * BUSY_MODES
                    .iter()
                    .find(|(m, _)| *m == busy_mode)
                    .map_or(0.0, |(_, share)| *share)
            }
        }
    }

    /// Core `cpu`'s busy share over the last [`AGENT_INTERVAL_SECONDS`], percent.
    pub fn core_percent(&self, cpu: usize) -> f64 {
        (self.cpu_percent * self.profile.core_weights[cpu]).min(100.0)
    }

    pub fn memory_used_bytes(&self) -> f64 {
        page(self.profile.memory_bytes * self.memory_percent / 100.0)
    }

    pub fn memory_available_bytes(&self) -> f64 {
        self.profile.memory_bytes - self.memory_used_bytes()
    }

    /// Swap in use: a host dips into it as memory fills (a fifth of what memory has
    /// above half full).
    pub fn swap_used_bytes(&self) -> f64 {
        let pressure = ((self.memory_percent - 50.0) / 50.0).clamp(0.0, 1.0);
        page(self.profile.swap_bytes * pressure / 5.0)
    }

    /// `(size, free, available)` bytes of file system `mount`: `free` counts the
    /// blocks reserved for root, `available` does not, as statfs reports them.
    pub fn filesystem(&self, mount: usize) -> (f64, f64, f64) {
        let size = self.profile.volumes[mount].size_bytes;
        let usable = size * (1.0 - RESERVED_SHARE);
        let used = page(usable * self.disk_percent[mount] / 100.0);
        let available = usable - used;
        (size, size - used, available)
    }

    /// Bytes interface `eth` received and sent since boot.
    pub fn link_bytes(&self, eth: usize) -> (f64, f64) {
        self.link_bytes_at(eth, self.uptime)
    }

    fn link_bytes_at(&self, eth: usize, s: f64) -> (f64, f64) {
        let link = &self.profile.links[eth];
        (link.received(s).floor(), link.transmitted(s).floor())
    }

    /// Receive and transmit rates of interface `eth` over the last
    /// [`AGENT_INTERVAL_SECONDS`], bytes per second.
    pub fn link_rates(&self, eth: usize) -> (f64, f64) {
        let window = AGENT_INTERVAL_SECONDS.min(self.uptime);
        if window <= 0.0 {
            return (0.0, 0.0);
        }
        let link = &self.profile.links[eth];
        let s = self.uptime;
        (
            (link.received(s) - link.received(s - window)) / window,
            (link.transmitted(s) - link.transmitted(s - window)) / window,
        )
    }

    /// Loopback bytes since boot (each way: what one end sends the other receives).
    pub fn loopback_bytes(&self) -> f64 {
        (LOOPBACK_RATE * self.uptime).floor()
    }

    /// Degrees of sensor `sensor`: 0 is the package, then one per core. In tenths, as
    /// coretemp reads.
    pub fn celsius(&self, sensor: usize) -> f64 {
        let celsius = if sensor == 0 {
            self.package_celsius
        } else {
            self.package_celsius - 1.0 - (sensor % 3) as f64
        };
        (celsius * 10.0).round() / 10.0
    }

    /// Load average over window 0 (1 minute), 1 (5) or 2 (15), in hundredths as the
    /// kernel writes it.
    pub fn load_average(&self, window: usize) -> f64 {
        (self.load[window] * 100.0).round() / 100.0
    }

    /// How the device looks against Vigil's default thresholds, by its CPU, memory
    /// and disks.
    pub fn band(&self) -> Band {
        let mounts = self.profile.mounts;
        let worst = self.disk_percent[..mounts]
            .iter()
            .copied()
            .fold(self.cpu_percent.max(self.memory_percent), f64::max);
        if worst > CRITICAL_THRESHOLD {
            Band::Critical
        } else if worst > ALERT_THRESHOLD {
            Band::Alert
        } else {
            Band::Normal
        }
    }
}

/// A reading's place against the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Normal,
    Alert,
    Critical,
}

/// Bytes rounded down to a whole 4 KiB page, as the kernel counts memory and blocks.
fn page(bytes: f64) -> f64 {
    (bytes / 4096.0).floor() * 4096.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::profile::{Shares, DEFAULT_SEED};

    fn profiles(count: usize) -> Vec<Profile> {
        (0..count)
            .map(|i| Profile::of(DEFAULT_SEED, &Shares::default(), i))
            .collect()
    }

    fn first_of(class: Class) -> Profile {
        profiles(500)
            .into_iter()
            .find(|p| p.class == class)
            .unwrap()
    }

    /// A time some months after every device booted.
    const NOW: f64 = 1_760_000_000.0;

    #[test]
    fn readings_are_a_function_of_seed_index_and_time() {
        let shares = Shares::default();
        for index in [0, 5, 321] {
            let a = Profile::of(9, &shares, index);
            let b = Profile::of(9, &shares, index);
            let ra = Reading::at(&a, Setting::Auto, &Anchor::BOOT, NOW + 0.25);
            let rb = Reading::at(&b, Setting::Auto, &Anchor::BOOT, NOW + 0.25);
            assert_eq!(ra.busy_seconds, rb.busy_seconds);
            assert_eq!(ra.memory_percent, rb.memory_percent);
            assert_eq!(ra.link_bytes(0), rb.link_bytes(0));
            assert_eq!(ra.filesystem(0), rb.filesystem(0));
        }
    }

    #[test]
    fn the_cpu_integral_matches_the_curve_across_episodes() {
        for class in [Class::Alert, Class::Critical, Class::Normal] {
            let p = first_of(class);
            for curve in [Curve::Profile, Curve::Calm, Curve::Alert, Curve::Critical] {
                // Numerically over two cycles, from a point before the first episode.
                let (from, to) = (0.0, 2.0 * p.cycle_seconds + 123.0);
                let steps = 400_000;
                let dt = (to - from) / steps as f64;
                let numeric: f64 = (0..steps)
                    .map(|k| p.cpu_percent(curve, from + (k as f64 + 0.5) * dt) * dt)
                    .sum();
                let closed = p.cpu_integral(curve, to) - p.cpu_integral(curve, from);
                assert!(
                    (numeric - closed).abs() < 1e-3 * closed,
                    "{class:?} {curve:?}: {numeric} vs {closed}"
                );
            }
        }
    }

    #[test]
    fn counters_never_decrease_even_across_forced_states() {
        for p in profiles(40) {
            let mut anchor = Anchor::BOOT;
            let mut setting = Setting::Auto;
            let mut last: Option<(f64, Vec<f64>, (f64, f64))> = None;
            let settings = [
                Setting::Critical,
                Setting::Auto,
                Setting::Normal,
                Setting::Alert,
                Setting::Slow,
                Setting::Auto,
            ];
            for step in 0..3000 {
                let time = NOW + step as f64 * 7.3;
                if step % 500 == 250 {
                    let next = settings[(step / 500) % settings.len()];
                    let uptime = time - p.boot_time;
                    anchor = anchor.switch(&p, next.curve(), uptime);
                    setting = next;
                }
                let r = Reading::at(&p, setting, &anchor, time);
                let cpu: Vec<f64> = (0..p.cpus)
                    .flat_map(|c| CpuMode::ALL.map(|m| r.cpu_seconds(c, m)))
                    .collect();
                let net = r.link_bytes(0);
                if let Some((busy, before, net_before)) = &last {
                    assert!(r.busy_seconds >= *busy, "busy went back at step {step}");
                    for (now, was) in cpu.iter().zip(before) {
                        assert!(now >= was, "a CPU counter went back at step {step}");
                    }
                    assert!(net.0 >= net_before.0 && net.1 >= net_before.1);
                }
                last = Some((r.busy_seconds, cpu, net));
            }
        }
    }

    /// CPU usage as a scraper derives it from two readings' counters, percent.
    fn scraped_cpu(a: &Reading, b: &Reading) -> f64 {
        let idle = |r: &Reading| -> f64 {
            (0..r.profile.cpus)
                .map(|c| r.cpu_seconds(c, CpuMode::Idle) + r.cpu_seconds(c, CpuMode::Iowait))
                .sum()
        };
        let total = |r: &Reading| -> f64 {
            (0..r.profile.cpus)
                .flat_map(|c| CpuMode::ALL.map(|m| r.cpu_seconds(c, m)))
                .sum()
        };
        100.0 * (1.0 - (idle(b) - idle(a)) / (total(b) - total(a)))
    }

    #[test]
    fn forced_states_read_on_the_right_side_of_the_thresholds() {
        for p in profiles(60) {
            // Seconds after boot of the next change: some months in, a different
            // moment for every device.
            let mut s = NOW - p.boot_time + (p.index as f64) * 11.0;
            let mut anchor = Anchor::BOOT;
            for (setting, low, high) in [
                (Setting::Critical, CRITICAL_THRESHOLD, 100.0),
                (Setting::Alert, ALERT_THRESHOLD, CRITICAL_THRESHOLD),
                (Setting::Normal, 0.0, ALERT_THRESHOLD),
                (Setting::Critical, CRITICAL_THRESHOLD, 100.0),
            ] {
                anchor = anchor.switch(&p, setting.curve(), s);
                // Polls 100 ms to 15 s apart, from right at the change on.
                let mut previous = Reading::at(&p, setting, &anchor, p.boot_time + s);
                for gap in [0.1, 0.5, 1.0, 5.0, 15.0, 0.1, 2.0] {
                    let r = Reading::at(&p, setting, &anchor, previous.time + gap);
                    for (what, value) in [
                        ("agent cpu", r.cpu_percent),
                        ("scraped cpu", scraped_cpu(&previous, &r)),
                        ("memory", r.memory_percent),
                    ] {
                        assert!(
                            value > low && value <= high,
                            "device {} {setting:?}: {what} {value}",
                            p.index
                        );
                    }
                    for c in 0..p.cpus {
                        assert!(r.core_percent(c) <= 100.0);
                    }
                    let expected = match setting {
                        Setting::Critical => Band::Critical,
                        Setting::Alert => Band::Alert,
                        _ => Band::Normal,
                    };
                    assert_eq!(r.band(), expected, "device {}", p.index);
                    previous = r;
                }
                s = previous.uptime + 3.0;
            }
        }
    }

    #[test]
    fn a_profile_crosses_its_threshold_in_episodes_only() {
        for class in [Class::Normal, Class::Alert, Class::Critical, Class::Slow] {
            let p = first_of(class);
            let mut seen = std::collections::HashSet::new();
            // Every 10 s over three cycles.
            let steps = (3.0 * p.cycle_seconds / 10.0) as usize;
            for k in 0..steps {
                let time = NOW + k as f64 * 10.0;
                let r = Reading::at(&p, Setting::Auto, &Anchor::BOOT, time);
                let band = r.band();
                seen.insert(band);
                let (now, before) = (p.in_episode(r.uptime), p.in_episode(r.uptime - 1.0));
                let expected = match class {
                    // The agent's one-second window straddles the episode's edge.
                    Class::Alert | Class::Critical if now != before => None,
                    Class::Alert if now => Some(Band::Alert),
                    Class::Critical if now => Some(Band::Critical),
                    _ => Some(Band::Normal),
                };
                if let Some(expected) = expected {
                    assert_eq!(band, expected, "{class:?} at uptime {}", r.uptime);
                }
            }
            let expected = match class {
                Class::Alert => vec![Band::Normal, Band::Alert],
                Class::Critical => vec![Band::Normal, Band::Critical],
                _ => vec![Band::Normal],
            };
            for band in expected {
                assert!(seen.contains(&band), "{class:?} never {band:?}");
            }
        }
    }

    #[test]
    fn unreachable_and_slow_devices_answer_so_in_their_episodes() {
        for (class, answer) in [
            (Class::Unreachable, Answer::Unavailable),
            (Class::Slow, Answer::Slowly),
        ] {
            let p = first_of(class);
            let inside = p.episode_start + 1.0 + p.cycle_seconds;
            let outside = p.episode_start + p.episode_seconds + 1.0;
            assert_eq!(p.answer(Setting::Auto, inside), answer);
            assert_eq!(p.answer(Setting::Auto, outside), Answer::Now);
            assert_eq!(p.answer(Setting::Normal, inside), Answer::Now);
        }
        let p = first_of(Class::Normal);
        assert_eq!(p.answer(Setting::Unreachable, 5.0), Answer::Unavailable);
        assert_eq!(p.answer(Setting::Slow, 5.0), Answer::Slowly);
    }

    #[test]
    fn file_systems_count_as_df_does_and_stay_below_the_alert_threshold() {
        for p in profiles(200) {
            for k in 0..50 {
                let r = Reading::at(&p, Setting::Auto, &Anchor::BOOT, NOW + k as f64 * 86_400.0);
                for mount in 0..p.mounts {
                    let (size, free, available) = r.filesystem(mount);
                    assert!(available <= free && free <= size);
                    let (_, percent) =
                        crate::metrics::agent_report::disk_usage(size, free, available);
                    assert!((percent - r.disk_percent[mount]).abs() < 0.01, "{percent}");
                    assert!(percent < ALERT_THRESHOLD);
                }
            }
        }
    }
}
