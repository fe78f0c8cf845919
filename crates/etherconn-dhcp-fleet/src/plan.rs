//! Which VLAN stack each client of a fleet sends and receives on.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::{Tpid, VlanId, VlanTag};

/// The VLAN id rule, the same in `etherconn-perf`: 0 is not a VLAN (an 802.1Q tag with id 0
/// only carries a priority) and 4095 is reserved.
const VLAN_RULE: &str =
    "VLAN ids are 1 to 4094 (0 marks a priority-tagged frame, 4095 is reserved)";

/// An inclusive range of VLAN ids, written `100` or `100-163`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanRange(RangeInclusive<u16>);

impl VlanRange {
    /// The ids `first..=last`; `None` when either is not a usable VLAN id (1 to 4094) or
    /// `first > last`.
    pub fn new(first: u16, last: u16) -> Option<VlanRange> {
        let ok = |id: u16| (1..=4094).contains(&id);
        (ok(first) && ok(last) && first <= last).then_some(VlanRange(first..=last))
    }

    /// How many ids the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.0.end() - self.0.start()) + 1
    }

    /// Always false: a range holds at least one id.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `i`-th id, wrapping around.
    fn nth(&self, i: usize) -> VlanId {
        // len() <= 4094, so the sum fits in u16; ids in the range are valid by construction.
        let id = self.0.start() + (i % self.len()) as u16;
        VlanId::new(id).unwrap_or_default()
    }
}

impl FromStr for VlanRange {
    type Err = String;

    /// Parses `ID` or `FIRST-LAST`; the message of an error names the rule it broke.
    fn from_str(s: &str) -> Result<Self, String> {
        let id = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|id| (1..=4094).contains(id))
                .ok_or_else(|| format!("{t:?} is not a VLAN id: {VLAN_RULE}"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (id(a)?, id(b)?),
            None => (id(s)?, id(s)?),
        };
        VlanRange::new(first, last)
            .ok_or_else(|| format!("{s:?}: the first VLAN id is above the last"))
    }
}

impl fmt::Display for VlanRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.start() == self.0.end() {
            write!(f, "{}", self.0.start())
        } else {
            write!(f, "{}-{}", self.0.start(), self.0.end())
        }
    }
}

/// The VLAN stack of every client: none, one 802.1Q tag, or an 802.1ad outer tag over an
/// 802.1Q inner one, each tag's id taken round-robin from its range.
///
/// Client `i` gets inner id `inner[i % inner.len()]` and outer id
/// `outer[(i / inner.len()) % outer.len()]`, so every (outer, inner) pair is used before
/// one repeats.
///
/// ```
/// use etherconn_dhcp_fleet::VlanPlan;
/// let plan = VlanPlan::qinq("7".parse()?, "100-101".parse()?);
/// let ids = |i| plan.stack(i).as_slice().iter().map(|t| t.id.get()).collect::<Vec<_>>();
/// assert_eq!(ids(0), [7, 100]);
/// assert_eq!(ids(1), [7, 101]);
/// assert_eq!(ids(2), [7, 100]);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VlanPlan {
    inner: Option<VlanRange>,
    outer: Option<VlanRange>,
}

impl VlanPlan {
    /// No tags.
    pub fn untagged() -> VlanPlan {
        VlanPlan::default()
    }

    /// One 802.1Q tag (TPID 0x8100) from `ids`.
    pub fn dot1q(ids: VlanRange) -> VlanPlan {
        VlanPlan {
            inner: Some(ids),
            outer: None,
        }
    }

    /// An 802.1ad outer tag (TPID 0x88a8) from `outer` over an 802.1Q inner tag from `inner`.
    pub fn qinq(outer: VlanRange, inner: VlanRange) -> VlanPlan {
        VlanPlan {
            inner: Some(inner),
            outer: Some(outer),
        }
    }

    /// The stack of client `i`, outermost first.
    pub fn stack(&self, i: usize) -> VlanStack {
        let mut stack = VlanStack::EMPTY;
        let Some(inner) = &self.inner else {
            return stack;
        };
        // At most two tags are pushed, which a VlanStack always holds.
        if let Some(outer) = &self.outer {
            let _ = stack.push(VlanTag::new(Tpid::QINQ, outer.nth(i / inner.len())));
        }
        let _ = stack.push(VlanTag::new(Tpid::DOT1Q, inner.nth(i)));
        stack
    }
}

impl fmt::Display for VlanPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.outer, &self.inner) {
            (Some(o), Some(i)) => write!(f, "qinq {o} / vlan {i}"),
            (None, Some(i)) => write!(f, "vlan {i}"),
            _ => f.write_str("untagged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ranges() {
        assert_eq!("100".parse::<VlanRange>().unwrap().len(), 1);
        assert_eq!("100-163".parse::<VlanRange>().unwrap().len(), 64);
        assert_eq!("1-4094".parse::<VlanRange>().unwrap().len(), 4094);
        for bad in ["0", "4095", "200-100", "x", "1-", ""] {
            assert!(bad.parse::<VlanRange>().is_err(), "{bad}");
        }
        let e = "0".parse::<VlanRange>().unwrap_err();
        assert_eq!(e, format!("\"0\" is not a VLAN id: {VLAN_RULE}"));
        assert!("0-5".parse::<VlanRange>().unwrap_err().contains(VLAN_RULE));
        assert!("200-100"
            .parse::<VlanRange>()
            .unwrap_err()
            .contains("above the last"));
        assert_eq!("5-9".parse::<VlanRange>().unwrap().to_string(), "5-9");
    }

    #[test]
    fn stacks() {
        assert!(VlanPlan::untagged().stack(3).is_empty());
        let p = VlanPlan::dot1q("10-12".parse().unwrap());
        let s = p.stack(4);
        assert_eq!(s.as_slice(), &[VlanTag::dot1q(11).unwrap()]);
        let p = VlanPlan::qinq("20-21".parse().unwrap(), "10-12".parse().unwrap());
        let outer: Vec<u16> = (0..7).map(|i| p.stack(i).as_slice()[0].id.get()).collect();
        assert_eq!(outer, [20, 20, 20, 21, 21, 21, 20]);
        assert_eq!(p.stack(0).as_slice()[0].tpid, Tpid::QINQ);
        assert_eq!(p.stack(0).as_slice()[1].tpid, Tpid::DOT1Q);
    }
}
