//! The states devices are forced into at run time (`PUT /d/{i}/state`), with the
//! anchor of each forced device's CPU counters. Only forced devices have an entry: a
//! fleet of 100,000 devices that nobody forces holds nothing here.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use super::model::{Anchor, Setting};
use super::profile::Profile;

/// A device's setting and where its counters stand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Control {
    pub setting: Setting,
    pub anchor: Anchor,
}

impl Control {
    /// A device nobody forced.
    pub const AUTO: Control = Control {
        setting: Setting::Auto,
        anchor: Anchor::BOOT,
    };
}

/// Every forced device's [`Control`], by index.
#[derive(Debug, Default)]
pub struct Controls {
    /// Read at every request of a forced device, written at every `PUT`. Entries stay
    /// after `auto`: the counters keep the offset the forced time gave them.
    forced: RwLock<HashMap<usize, Control>>,
}

impl Controls {
    pub fn get(&self, index: usize) -> Control {
        // Entries are written whole, so a panic elsewhere leaves the map sound.
        self.forced
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&index)
            .copied()
            .unwrap_or(Control::AUTO)
    }

    /// Puts `profile`'s device in `setting` from Unix time `time` on. Its counters go on
    /// from where they stand, along the new setting's curve.
    pub fn set(&self, profile: &Profile, setting: Setting, time: f64) -> Control {
        let mut forced = self.forced.write().unwrap_or_else(PoisonError::into_inner);
        let current = forced.get(&profile.index).copied().unwrap_or(Control::AUTO);
        let curve = setting.curve();
        let anchor = if curve == current.anchor.curve {
            current.anchor
        } else {
            let uptime = (time - profile.boot_time).max(0.0);
            current.anchor.switch(profile, curve, uptime)
        };
        let control = Control { setting, anchor };
        forced.insert(profile.index, control);
        control
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::model::{Curve, Reading};
    use crate::fleet::profile::{Shares, DEFAULT_SEED};

    #[test]
    fn forcing_a_device_keeps_its_counters_continuous() {
        let controls = Controls::default();
        let profile = Profile::of(DEFAULT_SEED, &Shares::default(), 4);
        let t = 1_760_000_000.0;
        assert_eq!(controls.get(4), Control::AUTO);
        let before = Reading::at(&profile, Setting::Auto, &Anchor::BOOT, t).busy_seconds;
        let control = controls.set(&profile, Setting::Critical, t);
        assert_eq!(control.anchor.curve, Curve::Critical);
        let after = Reading::at(&profile, control.setting, &control.anchor, t).busy_seconds;
        assert!((after - before).abs() < 1e-6, "{before} then {after}");
        // Unreachable keeps the profile's readings: back on its curve, anchored anew.
        let unreachable = controls.set(&profile, Setting::Unreachable, t + 60.0);
        assert_eq!(unreachable.anchor.curve, Curve::Profile);
        let slow = controls.set(&profile, Setting::Slow, t + 70.0);
        assert_eq!(slow.anchor, unreachable.anchor, "same curve, same anchor");
        assert_eq!(controls.get(4).setting, Setting::Slow);
        assert_eq!(controls.get(5), Control::AUTO);
    }
}
