//! Which VLAN stack each client of a fleet sends and receives on.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

use etherconn_core::wire::vlan::{VlanStack, MAX_TAGS};
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

/// The VLAN stack of every client: none, one 802.1Q tag, an 802.1ad outer tag over an
/// 802.1Q inner one, or three tags (802.1ad outermost, then two 802.1Q), each tag's id taken
/// round-robin from its range.
///
/// The innermost id changes fastest: client `i` gets inner id `inner[i % inner.len()]`, the
/// tag over it `next[(i / inner.len()) % next.len()]`, and so on outwards, so every
/// combination of ids is used before one repeats.
///
/// ```
/// use etherconn_dhcp_fleet::VlanPlan;
/// let plan = VlanPlan::qinq("7".parse()?, "100-101".parse()?);
/// let ids = |i| plan.stack(i).as_slice().iter().map(|t| t.id.get()).collect::<Vec<_>>();
/// assert_eq!(ids(0), [7, 100]);
/// assert_eq!(ids(1), [7, 101]);
/// assert_eq!(ids(2), [7, 100]);
/// let plan: VlanPlan = "10.200-201.100".parse()?;
/// let ids = |i| plan.stack(i).as_slice().iter().map(|t| t.id.get()).collect::<Vec<_>>();
/// assert_eq!(ids(0), [10, 200, 100]);
/// assert_eq!(ids(1), [10, 201, 100]);
/// assert!("1.2.3.4".parse::<VlanPlan>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VlanPlan {
    /// One range per tag, outermost first; at most [`MAX_TAGS`].
    ranges: Vec<VlanRange>,
}

impl VlanPlan {
    /// No tags.
    pub fn untagged() -> VlanPlan {
        VlanPlan::default()
    }

    /// One 802.1Q tag (TPID 0x8100) from `ids`.
    pub fn dot1q(ids: VlanRange) -> VlanPlan {
        VlanPlan { ranges: vec![ids] }
    }

    /// An 802.1ad outer tag (TPID 0x88a8) from `outer` over an 802.1Q inner tag from `inner`.
    pub fn qinq(outer: VlanRange, inner: VlanRange) -> VlanPlan {
        VlanPlan {
            ranges: vec![outer, inner],
        }
    }

    /// One tag per range, outermost first: an 802.1Q tag alone; with two or three, the outermost
    /// is 802.1ad (TPID 0x88a8) and the others 802.1Q. More than [`MAX_TAGS`] (three) ranges
    /// is an error.
    pub fn stacked(ranges: Vec<VlanRange>) -> Result<VlanPlan, String> {
        if ranges.len() > MAX_TAGS {
            return Err(format!(
                "at most {MAX_TAGS} VLAN tags (outermost first), {} given",
                ranges.len()
            ));
        }
        Ok(VlanPlan { ranges })
    }

    /// Number of tags in every client's stack.
    pub fn tags(&self) -> usize {
        self.ranges.len()
    }

    /// The stack of client `i`, outermost first.
    pub fn stack(&self, i: usize) -> VlanStack {
        let mut stack = VlanStack::EMPTY;
        let n = self.ranges.len();
        for (k, range) in self.ranges.iter().enumerate() {
            // How many clients in a row share this tag's id: the product of the lengths of
            // the ranges inside it (at most 4094², no overflow).
            let run: usize = self.ranges[k + 1..].iter().map(VlanRange::len).product();
            let tpid = if k == 0 && n > 1 {
                Tpid::QINQ
            } else {
                Tpid::DOT1Q
            };
            // At most MAX_TAGS ranges (checked when the plan was made), which a VlanStack
            // always holds.
            let _ = stack.push(VlanTag::new(tpid, range.nth(i / run)));
        }
        stack
    }
}

/// `ID[-ID]`, then up to two more `.ID[-ID]`, outermost first (see [`VlanPlan::stacked`]).
impl FromStr for VlanPlan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ranges = s
            .split('.')
            .map(str::parse)
            .collect::<Result<Vec<VlanRange>, String>>()?;
        VlanPlan::stacked(ranges).map_err(|e| format!("{s:?}: {e}"))
    }
}

impl fmt::Display for VlanPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ranges[..] {
            [] => f.write_str("untagged"),
            [i] => write!(f, "vlan {i}"),
            [o, i] => write!(f, "qinq {o} / vlan {i}"),
            ranges => {
                f.write_str("vlans ")?;
                for (k, r) in ranges.iter().enumerate() {
                    if k > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
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
        assert_eq!(p.to_string(), "qinq 20-21 / vlan 10-12");
    }

    #[test]
    fn three_tag_stacks() {
        let p: VlanPlan = "5.20-21.10-12".parse().unwrap();
        assert_eq!(p.tags(), 3);
        let ids = |i| -> Vec<u16> { p.stack(i).as_slice().iter().map(|t| t.id.get()).collect() };
        assert_eq!(ids(0), [5, 20, 10]);
        assert_eq!(ids(2), [5, 20, 12]);
        assert_eq!(ids(3), [5, 21, 10]);
        assert_eq!(ids(5), [5, 21, 12]);
        assert_eq!(ids(6), [5, 20, 10]);
        // Every (middle, inner) pair once in the first six clients.
        let pairs: std::collections::HashSet<Vec<u16>> = (0..6).map(ids).collect();
        assert_eq!(pairs.len(), 6);
        let tpids: Vec<Tpid> = p.stack(0).as_slice().iter().map(|t| t.tpid).collect();
        assert_eq!(tpids, [Tpid::QINQ, Tpid::DOT1Q, Tpid::DOT1Q]);
        assert_eq!(p.to_string(), "vlans 5.20-21.10-12");
        // The general form of one and two tags is --vlan and --qinq/--vlan.
        assert_eq!(
            "7".parse::<VlanPlan>().unwrap(),
            VlanPlan::dot1q("7".parse().unwrap())
        );
        assert_eq!(
            "7.100-101".parse::<VlanPlan>().unwrap(),
            VlanPlan::qinq("7".parse().unwrap(), "100-101".parse().unwrap())
        );
        assert_eq!(
            "1.2.3.4".parse::<VlanPlan>().unwrap_err(),
            "\"1.2.3.4\": at most 3 VLAN tags (outermost first), 4 given"
        );
        assert!("1..3".parse::<VlanPlan>().unwrap_err().contains(VLAN_RULE));
        assert!("1.4095.3"
            .parse::<VlanPlan>()
            .unwrap_err()
            .contains(VLAN_RULE));
    }
}
