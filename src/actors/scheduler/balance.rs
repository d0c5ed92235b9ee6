//! Balancing methods (seed 002): which server takes the next monitor.
//!
//! - `round_robin`: the persisted rotating index of seed 000. It counts turns and only
//!   grows; the server it points at is the index modulo the number of servers. A
//!   server that is down or full is skipped and the index moves past the chosen one.
//! - `least_monitors`: the server running the fewest monitors (the seed's CONNECTION).
//! - `server_memory`, `server_cpu`, `server_threads`: the server whose node reported the
//!   least process memory, host CPU (5 s average) or threads with its last heartbeat.
//!   Reports do not yet show what this pass placed, so within one pass each monitor a
//!   server is given counts as one more monitor's share of its load (its value ÷
//!   (monitors + 1)); a batch spreads instead of all landing on one server.
//!
//! Ties go to the lowest server id. A report method falls back to `round_robin` for
//! the pass, with a warning, when a server that could take monitors has not reported.

use std::cmp::Ordering;

pub use crate::domain::BalanceMethod;
use crate::domain::LoadReport;

/// A server as one pass sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub server_id: i64,
    /// It answered, so it may take monitors.
    pub up: bool,
    /// Monitors it runs at the start of the pass.
    pub running: usize,
    /// Monitors it may run at most.
    pub limit: usize,
    /// Its node's last load report.
    pub report: Option<LoadReport>,
}

/// Chooses servers for one pass, counting what it placed.
#[derive(Debug)]
pub struct Balancer {
    method: BalanceMethod,
    /// In server id order.
    candidates: Vec<Candidate>,
    /// Monitors given to each candidate in this pass.
    placed: Vec<usize>,
    /// Candidates that refused or failed in this pass.
    refused: Vec<bool>,
    /// The rotating index (round_robin).
    rotation: i64,
}

impl Balancer {
    /// A balancer for `method` over `candidates` (any order), starting from the stored
    /// rotating index. Answers, too, why a report method fell back to `round_robin`.
    pub fn new(
        method: BalanceMethod,
        mut candidates: Vec<Candidate>,
        rotation: i64,
    ) -> (Balancer, Option<String>) {
        candidates.sort_by_key(|c| c.server_id);
        let unreported: Vec<String> = candidates
            .iter()
            .filter(|c| c.up && c.running < c.limit && c.report.is_none())
            .map(|c| c.server_id.to_string())
            .collect();
        let (method, fallback) = if method.needs_reports() && !unreported.is_empty() {
            let why = format!(
                "{} needs load reports and server {} has not reported yet: placing round_robin",
                method.as_str(),
                unreported.join(", ")
            );
            (BalanceMethod::RoundRobin, Some(why))
        } else {
            (method, None)
        };
        let count = candidates.len();
        let balancer = Balancer {
            method,
            candidates,
            placed: vec![0; count],
            refused: vec![false; count],
            rotation: rotation.max(0),
        };
        (balancer, fallback)
    }

    /// The method in effect for this pass.
    pub fn method(&self) -> BalanceMethod {
        self.method
    }

    /// The rotating index to store after this pass (never below the stored one).
    pub fn rotation(&self) -> i64 {
        self.rotation
    }

    fn can_take(&self, i: usize) -> bool {
        let c = &self.candidates[i];
        c.up && !self.refused[i] && c.running + self.placed[i] < c.limit
    }

    /// The server for the next monitor, counted as placed; `None` when none can take it.
    pub fn choose(&mut self) -> Option<i64> {
        let chosen = match self.method {
            BalanceMethod::RoundRobin => self.next_in_rotation(),
            BalanceMethod::LeastMonitors => {
                self.lowest(|b, i| (b.candidates[i].running + b.placed[i]) as f64)
            }
            method => self.lowest(|b, i| {
                let c = &b.candidates[i];
                let value = c
                    .report
                    .as_ref()
                    .and_then(|r| method.reported(r))
                    .unwrap_or(0.0);
                // Each monitor given in this pass adds one monitor's share of the load.
                value * (1.0 + b.placed[i] as f64 / (c.running as f64 + 1.0))
            }),
        }?;
        self.placed[chosen] += 1;
        Some(self.candidates[chosen].server_id)
    }

    /// `server_id` when it can take one more monitor (counted as placed), else the
    /// server [`Self::choose`] chooses.
    pub fn choose_preferring(&mut self, server_id: i64) -> Option<i64> {
        match self.position(server_id) {
            Some(i) if self.can_take(i) => {
                self.placed[i] += 1;
                Some(server_id)
            }
            _ => self.choose(),
        }
    }

    /// Walks from the rotating index, wrapping once; moves the index past the choice.
    fn next_in_rotation(&mut self) -> Option<usize> {
        let count = self.candidates.len();
        if count == 0 {
            return None;
        }
        let start = (self.rotation % count as i64) as usize;
        let step = (0..count).find(|step| self.can_take((start + step) % count))?;
        self.rotation += step as i64 + 1;
        Some((start + step) % count)
    }

    /// The candidate that can take a monitor with the lowest `score`, ties to the lowest id.
    fn lowest(&self, score: impl Fn(&Balancer, usize) -> f64) -> Option<usize> {
        (0..self.candidates.len())
            .filter(|&i| self.can_take(i))
            .map(|i| (score(self, i), i))
            .min_by(|(a, i), (b, j)| a.partial_cmp(b).unwrap_or(Ordering::Equal).then(i.cmp(j)))
            .map(|(_, i)| i)
    }

    /// The server refused (at its limit) or could not be reached: it takes nothing
    /// more in this pass, and `lost` of the monitors counted for it are taken back.
    pub fn refuse(&mut self, server_id: i64, lost: usize) {
        if let Some(i) = self.position(server_id) {
            self.refused[i] = true;
            self.placed[i] = self.placed[i].saturating_sub(lost);
        }
    }

    /// A monitor counted for the server did not go there after all.
    pub fn take_back(&mut self, server_id: i64) {
        if let Some(i) = self.position(server_id) {
            self.placed[i] = self.placed[i].saturating_sub(1);
        }
    }

    fn position(&self, server_id: i64) -> Option<usize> {
        self.candidates
            .binary_search_by_key(&server_id, |c| c.server_id)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(id: i64, running: usize) -> Candidate {
        Candidate {
            server_id: id,
            up: true,
            running,
            limit: 100,
            report: None,
        }
    }

    fn reporting(id: i64, running: usize, memory: i64, cpu: f64, threads: i32) -> Candidate {
        Candidate {
            report: Some(LoadReport {
                memory_bytes: memory,
                cpu_percent: cpu,
                threads,
            }),
            ..server(id, running)
        }
    }

    fn picks(balancer: &mut Balancer, n: usize) -> Vec<i64> {
        (0..n).filter_map(|_| balancer.choose()).collect()
    }

    /// Seed 002, ROUND_ROBIN: 1, 2, 3, then 1 again; a server left idle in between is
    /// not preferred, the sequence goes on.
    #[test]
    fn round_robin_follows_the_sequence_whatever_the_load() {
        let servers = vec![server(1, 0), server(2, 0), server(3, 0)];
        let (mut b, fallback) = Balancer::new(BalanceMethod::RoundRobin, servers, 0);
        assert_eq!(fallback, None);
        assert_eq!(picks(&mut b, 4), vec![1, 2, 3, 1]);
        assert_eq!(b.rotation(), 4);
        // Server 3 is idle now; the next turn is still server 2, then 3, then 1.
        let servers = vec![server(1, 2), server(2, 1), server(3, 0)];
        let (mut b, _) = Balancer::new(BalanceMethod::RoundRobin, servers, 4);
        assert_eq!(picks(&mut b, 3), vec![2, 3, 1]);
        assert_eq!(b.rotation(), 7, "the index only grows");
    }

    #[test]
    fn round_robin_skips_servers_down_full_or_refusing_and_moves_past_the_choice() {
        let mut down = server(1, 0);
        down.up = false;
        let mut full = server(2, 5);
        full.limit = 5;
        let servers = vec![down, full, server(3, 0), server(4, 0)];
        let (mut b, _) = Balancer::new(BalanceMethod::RoundRobin, servers, 0);
        assert_eq!(b.choose(), Some(3));
        assert_eq!(b.rotation(), 3, "past server 3, at position 3");
        b.refuse(4, 0);
        assert_eq!(b.choose(), Some(3));
        assert_eq!(b.rotation(), 7, "wrapped past 1, 2 and 4 back to 3");
    }

    /// Seed 002, CONNECTION: all at zero, the first goes to server 1 (lowest id), then
    /// 2, then 3; when server 2's user leaves, the next goes to server 2.
    #[test]
    fn least_monitors_takes_the_server_with_fewest() {
        let servers = vec![server(1, 0), server(2, 0), server(3, 0)];
        let (mut b, _) = Balancer::new(BalanceMethod::LeastMonitors, servers, 0);
        assert_eq!(picks(&mut b, 3), vec![1, 2, 3]);
        let servers = vec![server(1, 1), server(2, 0), server(3, 1)];
        let (mut b, _) = Balancer::new(BalanceMethod::LeastMonitors, servers, 9);
        assert_eq!(b.choose(), Some(2));
        assert_eq!(b.rotation(), 9, "only round_robin moves the index");
    }

    /// Seed 002, SERVER_MEMORY: server 2 reports the least (33,966) and gets the first;
    /// with new reports server 3 is lowest, then server 1, which, far below the
    /// others, also gets the fourth.
    #[test]
    fn server_memory_takes_the_server_reporting_least_memory() {
        let pick = |memories: [i64; 3]| {
            let servers = (0..3)
                .map(|i| reporting(i as i64 + 1, 0, memories[i], 0.0, 10))
                .collect();
            let (mut b, fallback) = Balancer::new(BalanceMethod::ServerMemory, servers, 0);
            assert_eq!(fallback, None);
            b.choose()
        };
        assert_eq!(pick([34_100, 33_966, 34_010]), Some(2));
        assert_eq!(pick([34_100, 36_000, 34_010]), Some(3));
        assert_eq!(pick([20_000, 36_000, 35_500]), Some(1));
        assert_eq!(pick([22_000, 36_000, 35_500]), Some(1));
    }

    /// Seed 002, SERVER_THREADS: server 1 went from 18 to 20 threads; the next goes to
    /// server 2 or 3 (2: ties go to the lowest id).
    #[test]
    fn server_threads_takes_the_server_with_fewest_threads() {
        let servers = vec![
            reporting(1, 1, 1, 0.0, 20),
            reporting(2, 0, 1, 0.0, 18),
            reporting(3, 0, 1, 0.0, 18),
        ];
        let (mut b, _) = Balancer::new(BalanceMethod::ServerThreads, servers, 0);
        assert_eq!(b.choose(), Some(2));
    }

    #[test]
    fn server_cpu_takes_the_least_busy_host() {
        let servers = vec![
            reporting(1, 0, 1, 70.0, 1),
            reporting(2, 0, 1, 15.5, 1),
            reporting(3, 0, 1, 40.0, 1),
        ];
        let (mut b, _) = Balancer::new(BalanceMethod::ServerCpu, servers, 0);
        assert_eq!(b.choose(), Some(2));
    }

    #[test]
    fn a_batch_spreads_by_each_servers_share_per_monitor() {
        // Equal reports, nothing running: one each in id order, then round again.
        let servers = (1..=3).map(|id| reporting(id, 0, 100, 0.0, 1)).collect();
        let (mut b, _) = Balancer::new(BalanceMethod::ServerMemory, servers, 0);
        assert_eq!(picks(&mut b, 6), vec![1, 2, 3, 1, 2, 3]);
        // Server 1 holds 300 over 2 monitors (100 a share), server 2 holds 100 over none:
        // 2 (100) → 2 (200) → 1 (300) … each turn to the lowest score.
        let servers = vec![reporting(1, 2, 300, 0.0, 1), reporting(2, 0, 100, 0.0, 1)];
        let (mut b, _) = Balancer::new(BalanceMethod::ServerMemory, servers, 0);
        assert_eq!(picks(&mut b, 4), vec![2, 2, 1, 2]);
    }

    #[test]
    fn report_methods_fall_back_to_round_robin_until_every_server_reported() {
        let servers = vec![reporting(1, 0, 500, 0.0, 1), server(2, 0)];
        let (mut b, fallback) = Balancer::new(BalanceMethod::ServerMemory, servers, 1);
        assert_eq!(b.method(), BalanceMethod::RoundRobin);
        let why = fallback.expect("a reason");
        assert!(why.contains("server 2 has not reported"), "{why}");
        assert_eq!(b.choose(), Some(2), "round_robin from index 1");
        // A server that is down does not count.
        let mut down = server(2, 0);
        down.up = false;
        let (b, fallback) = Balancer::new(
            BalanceMethod::ServerMemory,
            vec![reporting(1, 0, 5, 0.0, 1), down],
            0,
        );
        assert_eq!((b.method(), fallback), (BalanceMethod::ServerMemory, None));
    }

    #[test]
    fn nothing_is_chosen_when_no_server_can_take_a_monitor() {
        let mut full = server(1, 1);
        full.limit = 1;
        for method in BalanceMethod::ALL {
            let (mut b, _) = Balancer::new(method, vec![full.clone()], 0);
            assert_eq!(b.choose(), None, "{method:?}");
        }
        let (mut b, _) = Balancer::new(BalanceMethod::LeastMonitors, vec![server(1, 0)], 0);
        b.refuse(1, 0);
        assert_eq!(b.choose(), None);
    }
}
