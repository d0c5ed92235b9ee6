//! The supervisor and its monitors, driven directly with messages. The probe is
//! scripted: it records what it polled, and can panic or report the device down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use super::*;
use crate::domain::{DeviceKind, PollResult};
use crate::probe::{Probe, ProbeFactory};

/// What the scripted probe does, shared by every monitor of a test.
#[derive(Default)]
struct Script {
    /// (device id, address, when) of every poll, in order.
    polls: Mutex<Vec<(i64, String, Instant)>>,
    /// The threads polls ran on.
    threads: Mutex<HashSet<ThreadId>>,
    /// Polls that panic before the future is made, then this many inside the future.
    panics_now: AtomicUsize,
    panics_later: AtomicUsize,
    /// Builds of the probe (a monitor's start) that panic.
    factory_panics: AtomicUsize,
    down: AtomicBool,
}

impl Script {
    fn polls_of(&self, device_id: i64) -> Vec<String> {
        let polls = self.polls.lock().unwrap();
        polls
            .iter()
            .filter(|(id, _, _)| *id == device_id)
            .map(|(_, a, _)| a.clone())
            .collect()
    }

    /// When each poll of `device_id` began, in order.
    fn poll_times(&self, device_id: i64) -> Vec<Instant> {
        let polls = self.polls.lock().unwrap();
        polls
            .iter()
            .filter(|(id, _, _)| *id == device_id)
            .map(|(_, _, at)| *at)
            .collect()
    }
}

/// Takes one from `counter` if it is not zero yet.
fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

struct ScriptedProbe(Arc<Script>);

impl Probe for ScriptedProbe {
    fn poll(&self, device: &DeviceSpec, _timeout: Duration) -> LocalBoxFuture<'static, PollResult> {
        let script = &self.0;
        script
            .polls
            .lock()
            .unwrap()
            .push((device.id, device.address.clone(), Instant::now()));
        script
            .threads
            .lock()
            .unwrap()
            .insert(std::thread::current().id());
        if take(&script.panics_now) {
            panic!("scripted probe panics while polling");
        }
        let panic_later = take(&script.panics_later);
        let up = !script.down.load(Ordering::SeqCst);
        async move {
            if panic_later {
                panic!("scripted probe panics inside its future");
            }
            PollResult {
                at: Utc::now(),
                up,
                latency_ms: 1.0,
                status_code: Some(if up { 200 } else { 503 }),
                error: (!up).then(|| "answered HTTP 503".to_string()),
                metrics: Default::default(),
                raw: None,
            }
        }
        .boxed_local()
    }
}

fn scripted(script: &Arc<Script>) -> ProbeFactory {
    let script = Arc::clone(script);
    Arc::new(move || {
        if take(&script.factory_panics) {
            panic!("scripted probe cannot be built");
        }
        Box::new(ScriptedProbe(Arc::clone(&script))) as Box<dyn Probe>
    })
}

fn config(max: u32, poll_interval_ms: u64) -> MonitorConfig {
    MonitorConfig {
        poll_interval_ms,
        timeout_ms: 1_000,
        alert_threshold: 70,
        critical_threshold: 90,
        max_monitors_per_server: max,
        unreachable_after: 1,
    }
}

fn device(id: i64) -> DeviceSpec {
    DeviceSpec {
        id,
        company_id: 1,
        name: format!("device-{id}"),
        company: "acme".into(),
        address: format!("http://device-{id}.test/"),
        kind: DeviceKind::Http,
        expected_status: None,
    }
}

fn start(id: i64, config: MonitorConfig) -> StartMonitor {
    StartMonitor {
        device: device(id),
        config,
        epoch: 1,
    }
}

fn server(
    script: &Arc<Script>,
    config: MonitorConfig,
) -> (Tracked<MonitorServerActor>, ActorRegistry) {
    let registry = ActorRegistry::new();
    let actor = MonitorServerActor::new(7, config, scripted(script), registry.clone()).launch();
    (actor, registry)
}

async fn status(actor: &Tracked<MonitorServerActor>, device_id: i64) -> MonitorStatus {
    actor
        .send(GetMonitorStatus { device_id })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("device {device_id} is not monitored"))
}

/// Waits until `check` holds, polling; fails the test after five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn a_start_beyond_the_limit_is_refused() {
    let script = Arc::new(Script::default());
    let limit = config(2, 1_000);
    let (actor, _) = server(&script, limit);
    assert_eq!(actor.send(start(1, limit)).await.unwrap(), Ok(()));
    assert_eq!(actor.send(start(2, limit)).await.unwrap(), Ok(()));
    assert_eq!(
        actor.send(start(3, limit)).await.unwrap(),
        Err(StartRefused::AtLimit(2))
    );
    let info = actor.send(GetInfo).await.unwrap();
    assert_eq!(info.running_monitors, 2);
    assert_eq!(info.device_ids, vec![1, 2]);
    assert_eq!(info.max_monitors, 2);

    // A stop frees a place.
    assert_eq!(
        actor
            .send(StopMonitor {
                device_id: 1,
                epoch: None
            })
            .await
            .unwrap(),
        StopAnswer::Stopped { epoch: 1 }
    );
    assert_eq!(actor.send(start(3, limit)).await.unwrap(), Ok(()));
}

#[actix_rt::test]
async fn a_device_already_running_here_is_refused() {
    let script = Arc::new(Script::default());
    let (actor, _) = server(&script, config(10, 1_000));
    assert_eq!(
        actor.send(start(1, config(10, 1_000))).await.unwrap(),
        Ok(())
    );
    assert_eq!(
        actor.send(start(1, config(10, 1_000))).await.unwrap(),
        Err(StartRefused::AlreadyRunning(1))
    );
    assert_eq!(actor.send(GetInfo).await.unwrap().running_monitors, 1);
}

#[actix_rt::test]
async fn a_stopped_monitor_stops_polling() {
    let script = Arc::new(Script::default());
    let (actor, _) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    eventually("a few polls", || async { script.polls_of(1).len() >= 2 }).await;
    assert_eq!(
        actor
            .send(StopMonitor {
                device_id: 1,
                epoch: Some(1)
            })
            .await
            .unwrap(),
        StopAnswer::Stopped { epoch: 1 }
    );
    assert_eq!(
        actor
            .send(StopMonitor {
                device_id: 1,
                epoch: None
            })
            .await
            .unwrap(),
        StopAnswer::NotRunning
    );
    actix_rt::time::sleep(Duration::from_millis(60)).await;
    let settled = script.polls_of(1).len();
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        script.polls_of(1).len(),
        settled,
        "polls went on after the stop"
    );
}

#[actix_rt::test]
async fn a_config_update_reaches_every_monitor() {
    let script = Arc::new(Script::default());
    let slow = config(10, 60_000);
    let (actor, _) = server(&script, slow);
    for id in 1..=3 {
        actor.send(start(id, slow)).await.unwrap().unwrap();
    }
    eventually("the first poll of each", || async {
        (1..=3).all(|id| !script.polls_of(id).is_empty())
    })
    .await;

    let fast = config(10, 20);
    assert_eq!(actor.send(UpdateConfig(fast)).await.unwrap(), 3);
    for id in 1..=3 {
        assert_eq!(status(&actor, id).await.config, fast);
    }
    // Picked up without a restart: the short interval takes effect at once.
    eventually("polls at the new interval", || async {
        (1..=3).all(|id| script.polls_of(id).len() >= 4)
    })
    .await;
    for id in 1..=3 {
        assert_eq!(status(&actor, id).await.restarts, 0);
    }
    assert_eq!(actor.send(GetInfo).await.unwrap().max_monitors, 10);
}

#[actix_rt::test]
async fn a_device_update_reaches_only_its_monitor() {
    let script = Arc::new(Script::default());
    let (actor, _) = server(&script, config(10, 30));
    for id in 1..=3 {
        actor
            .send(start(id, config(10, 30)))
            .await
            .unwrap()
            .unwrap();
    }
    let mut changed = device(2);
    changed.address = "http://moved.test/".into();
    changed.name = "moved".into();
    assert!(actor.send(UpdateDevice(changed.clone())).await.unwrap());
    assert_eq!(status(&actor, 2).await.device, changed);
    eventually("the new address is polled", || async {
        script
            .polls_of(2)
            .contains(&"http://moved.test/".to_string())
    })
    .await;
    for id in [1, 3] {
        assert_eq!(status(&actor, id).await.device, device(id));
        assert!(script.polls_of(id).iter().all(|a| *a == device(id).address));
    }
    assert!(
        !actor.send(UpdateDevice(device(9))).await.unwrap(),
        "not monitored here"
    );
}

#[actix_rt::test]
async fn the_supervisor_restarts_a_monitor_whose_probe_panics() {
    let script = Arc::new(Script::default());
    script.panics_now.store(1, Ordering::SeqCst);
    let (actor, registry) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    eventually("the monitor is restarted and polls again", || async {
        let s = status(&actor, 1).await;
        s.restarts == 1 && s.polls >= 1 && s.state == HealthState::Normal
    })
    .await;
    let monitors = registry
        .snapshot()
        .into_iter()
        .filter(|a| a.kind == device_monitor::KIND)
        .count();
    assert_eq!(
        monitors, 1,
        "the restarted monitor keeps one registry entry"
    );
}

#[actix_rt::test]
async fn the_supervisor_restarts_a_monitor_whose_poll_panics_midway() {
    let script = Arc::new(Script::default());
    script.panics_later.store(2, Ordering::SeqCst);
    let (actor, _) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    eventually("two restarts, then normal polling", || async {
        let s = status(&actor, 1).await;
        s.restarts == 2 && s.polls >= 1
    })
    .await;
    assert_eq!(actor.send(GetInfo).await.unwrap().running_monitors, 1);
}

#[actix_rt::test]
async fn a_device_that_does_not_answer_well_is_unreachable() {
    let script = Arc::new(Script::default());
    script.down.store(true, Ordering::SeqCst);
    let (actor, _) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    eventually("unreachable after a failed poll", || async {
        status(&actor, 1).await.state == HealthState::Unreachable
    })
    .await;
    let s = status(&actor, 1).await;
    assert_eq!(s.failures, s.polls);
    assert_eq!(s.last_result.unwrap().status_code, Some(503));

    script.down.store(false, Ordering::SeqCst);
    eventually("normal again", || async {
        status(&actor, 1).await.state == HealthState::Normal
    })
    .await;
}

#[actix_rt::test]
async fn the_registry_shows_each_actor_and_what_it_handled() {
    let script = Arc::new(Script::default());
    let (actor, registry) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    actor.send(start(2, config(10, 20))).await.unwrap().unwrap();
    actor.send(GetInfo).await.unwrap();
    eventually("both monitors polled", || async {
        !script.polls_of(1).is_empty() && !script.polls_of(2).is_empty()
    })
    .await;

    let snapshot = registry.snapshot();
    let supervisor = snapshot.iter().find(|a| a.kind == KIND).unwrap();
    assert_eq!(supervisor.id, "7");
    assert_eq!(supervisor.handled.get("StartMonitor"), Some(&2));
    assert_eq!(supervisor.handled.get("GetInfo"), Some(&1));
    assert_eq!(supervisor.mailbox_len, 0);
    assert_eq!(supervisor.recent[0].message, "GetInfo", "newest first");
    let monitors: Vec<_> = snapshot
        .iter()
        .filter(|a| a.kind == device_monitor::KIND)
        .collect();
    assert_eq!(
        monitors.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["1", "2"]
    );
    assert!(monitors
        .iter()
        .all(|m| m.handled.get("Poll").is_some_and(|n| *n >= 1)));

    actor
        .send(StopMonitor {
            device_id: 1,
            epoch: None,
        })
        .await
        .unwrap();
    let ids: Vec<String> = registry
        .snapshot()
        .into_iter()
        .filter(|a| a.kind == device_monitor::KIND)
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec!["2"], "a stopped monitor leaves the registry");
}

#[actix_rt::test]
async fn a_start_with_newer_config_applies_it_to_the_running_monitors() {
    let script = Arc::new(Script::default());
    let (actor, _) = server(&script, config(10, 60_000));
    actor
        .send(start(1, config(10, 60_000)))
        .await
        .unwrap()
        .unwrap();
    // The coordinator's start carries the config it read just now.
    actor.send(start(2, config(5, 20))).await.unwrap().unwrap();
    assert_eq!(status(&actor, 1).await.config, config(5, 20));
    assert_eq!(actor.send(GetInfo).await.unwrap().max_monitors, 5);
}

#[actix_rt::test]
async fn the_supervisor_restarts_a_monitor_that_dies_while_starting() {
    let script = Arc::new(Script::default());
    script.factory_panics.store(1, Ordering::SeqCst);
    let (actor, _) = server(&script, config(10, 20));
    actor.send(start(1, config(10, 20))).await.unwrap().unwrap();
    // The first monitor panics in `started`, before its first poll.
    eventually("the monitor is back and polling", || async {
        let s = status(&actor, 1).await;
        s.restarts == 1 && s.polls >= 1
    })
    .await;
}

#[actix_rt::test]
async fn a_stop_naming_an_older_epoch_keeps_the_newer_copy() {
    let script = Arc::new(Script::default());
    let (actor, _) = server(&script, config(10, 1_000));
    let newer = StartMonitor {
        epoch: 7,
        ..start(1, config(10, 1_000))
    };
    actor.send(newer).await.unwrap().unwrap();
    actor
        .send(start(2, config(10, 1_000)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        actor
            .send(StopMonitor {
                device_id: 1,
                epoch: Some(6)
            })
            .await
            .unwrap(),
        StopAnswer::KeptNewer { epoch: 7 }
    );
    let answers = actor
        .send(StopMonitors(vec![(1, 6), (2, 1), (3, 9)]))
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            StopAnswer::KeptNewer { epoch: 7 },
            StopAnswer::Stopped { epoch: 1 },
            StopAnswer::NotRunning
        ]
    );
    let info = actor.send(GetInfo).await.unwrap();
    assert_eq!(info.device_ids, vec![1]);
    assert_eq!(
        info.monitors,
        Some(vec![RunningMonitor {
            device_id: 1,
            epoch: 7
        }])
    );
    // The epoch it runs under, or a newer one, stops it.
    assert_eq!(
        actor.send(StopMonitors(vec![(1, 7)])).await.unwrap(),
        vec![StopAnswer::Stopped { epoch: 7 }]
    );
}

#[actix_rt::test]
async fn monitors_are_dealt_out_over_the_poll_threads() {
    let script = Arc::new(Script::default());
    let threads: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
    let registry = ActorRegistry::new();
    let actor = MonitorServerActor::new(7, config(10, 20), scripted(&script), registry)
        .with_poll_threads(threads.iter().map(Arbiter::handle).collect())
        .launch();
    for id in 1..=4 {
        actor
            .send(start(id, config(10, 20)))
            .await
            .unwrap()
            .unwrap();
    }
    eventually("every device polled", || async {
        (1..=4).all(|id| !script.polls_of(id).is_empty())
    })
    .await;
    let used = script.threads.lock().unwrap().clone();
    assert_eq!(used.len(), 2, "both poll threads poll: {used:?}");
    assert!(
        !used.contains(&std::thread::current().id()),
        "no monitor runs on the supervisor's thread"
    );
    for thread in threads {
        thread.stop();
    }
}

#[actix_rt::test]
async fn a_blocked_poll_thread_leaves_pings_unanswered() {
    let script = Arc::new(Script::default());
    let threads: Vec<Arbiter> = (0..2).map(|_| Arbiter::new()).collect();
    let registry = ActorRegistry::new();
    let actor = MonitorServerActor::new(7, config(10, 1_000), scripted(&script), registry)
        .with_poll_threads(threads.iter().map(Arbiter::handle).collect())
        .launch();
    let answered = Arc::new(AtomicU64::new(0));
    let ping = |seq| Ping {
        seq,
        answered: Arc::clone(&answered),
    };
    actor.send(ping(1)).await.unwrap();
    eventually("a ping answered by every thread", || async {
        answered.load(Ordering::SeqCst) == 1
    })
    .await;

    let (release, blocked) = std::sync::mpsc::channel::<()>();
    threads[1].spawn_fn(move || {
        let _ = blocked.recv();
    });
    actor.send(ping(2)).await.unwrap();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "a blocked poll thread holds the answer back"
    );
    release.send(()).unwrap();
    eventually("the ping answered once the thread runs again", || async {
        answered.load(Ordering::SeqCst) == 2
    })
    .await;
    for thread in threads {
        thread.stop();
    }
}

#[actix_rt::test]
async fn a_new_poll_interval_keeps_each_monitors_place_in_it() {
    let script = Arc::new(Script::default());
    let slow = config(10, 10_000);
    let (actor, _) = server(&script, slow);
    // Its first poll is due halfway through a 10 s interval.
    let started = actor
        .send(StartMonitors {
            config: slow,
            monitors: vec![(device(1), 1, Duration::from_secs(5))],
        })
        .await
        .unwrap();
    assert_eq!(started, vec![Ok(())]);
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    // Down to 2 s: halfway through the new interval is 1 s from now, not 2 s.
    let began = Instant::now();
    actor.send(UpdateConfig(config(10, 2_000))).await.unwrap();
    eventually(
        "the first poll, in the same place of the new interval",
        || async { !script.polls_of(1).is_empty() },
    )
    .await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_millis(1_700),
        "first poll after {waited:?}"
    );
}

/// A server polling on one thread of its own (to hold up), with device 1 started in a
/// batch whose first poll is due after `first_poll_after`.
async fn one_thread_server_polling_device_1(
    script: &Arc<Script>,
    every: MonitorConfig,
    thread: &Arbiter,
    first_poll_after: Duration,
) -> Tracked<MonitorServerActor> {
    let actor = MonitorServerActor::new(7, every, scripted(script), ActorRegistry::new())
        .with_poll_threads(vec![thread.handle()])
        .launch();
    let started = actor
        .send(StartMonitors {
            config: every,
            monitors: vec![(device(1), 1, first_poll_after)],
        })
        .await
        .unwrap();
    assert_eq!(started, vec![Ok(())]);
    actor
}

/// Holds `thread` busy until `until`.
fn hold(thread: &Arbiter, until: Instant) {
    thread.spawn_fn(move || std::thread::sleep(until.saturating_duration_since(Instant::now())));
}

#[actix_rt::test]
async fn a_late_poll_does_not_move_the_monitors_next_one() {
    let script = Arc::new(Script::default());
    let thread = Arbiter::new();
    let _actor =
        one_thread_server_polling_device_1(&script, config(10, 1_000), &thread, Duration::ZERO)
            .await;
    eventually("the first poll", || async {
        !script.polls_of(1).is_empty()
    })
    .await;
    let first = script.poll_times(1)[0];
    // The poll thread is held from before the second poll is due until 600 ms after.
    actix_rt::time::sleep_until((first + Duration::from_millis(700)).into()).await;
    hold(&thread, first + Duration::from_millis(1_600));
    eventually("the third poll", || async { script.polls_of(1).len() >= 3 }).await;
    let times: Vec<Duration> = script.poll_times(1)[..3]
        .iter()
        .map(|at| at.duration_since(first))
        .collect();
    assert!(times[1] >= Duration::from_millis(1_550), "{times:?}");
    // Due two intervals after the first, not one interval after the late second.
    assert!(
        times[2] >= Duration::from_millis(1_950) && times[2] < Duration::from_millis(2_400),
        "{times:?}"
    );
    thread.stop();
}

/// The first `polls` polls of device 1, as times after its batch was sent, when the
/// one poll thread is busy creating monitors for the first 600 ms after the batch
/// comes and its first poll is due `first_after` from then.
async fn polls_after_a_busy_start(
    interval_ms: u64,
    first_after: Duration,
    polls: usize,
) -> Vec<Duration> {
    let script = Arc::new(Script::default());
    let thread = Arbiter::new();
    hold(&thread, Instant::now() + Duration::from_millis(600));
    let sent = Instant::now();
    let _actor =
        one_thread_server_polling_device_1(&script, config(10, interval_ms), &thread, first_after)
            .await;
    eventually("the polls", || async { script.polls_of(1).len() >= polls }).await;
    let times = script.poll_times(1)[..polls]
        .iter()
        .map(|at| at.duration_since(sent))
        .collect();
    thread.stop();
    times
}

#[actix_rt::test]
async fn a_batchs_first_polls_count_from_its_arrival_not_from_each_monitors_creation() {
    let first = polls_after_a_busy_start(10_000, Duration::from_millis(1_000), 1).await[0];
    // Due 1 s after the batch came, not 1 s after the busy thread created the monitor.
    assert!(
        first >= Duration::from_millis(950) && first < Duration::from_millis(1_450),
        "first poll after {first:?}"
    );
}

#[actix_rt::test]
async fn a_first_poll_held_up_by_its_creation_keeps_its_place_in_the_interval() {
    // Due 200 ms after the batch came, while the thread is busy until 600 ms.
    let times = polls_after_a_busy_start(1_000, Duration::from_millis(200), 2).await;
    assert!(times[0] >= Duration::from_millis(550), "{times:?}");
    // One interval after the slot it was given (200 ms), not after it could poll (600 ms).
    assert!(
        times[1] >= Duration::from_millis(1_150) && times[1] < Duration::from_millis(1_450),
        "{times:?}"
    );
}
