//! One client's RFC 2131 state machine (INIT -> SELECTING -> REQUESTING -> BOUND), with no I/O:
//! the fleet feeds it replies and timer expiries and carries out the [`Step`] it returns.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::message::{Reply, ReplyKind, Request};

/// Retransmission and give-up rules, shared by every client of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Wait after the first transmission of a message; doubled after each retransmission.
    pub(crate) rto: Duration,
    /// Upper bound of the doubled wait.
    pub(crate) max_rto: Duration,
    /// Retransmissions of one message before giving up on it.
    pub(crate) retries: u32,
    /// Restarts at DISCOVER (after a NAK, or a REQUEST never answered) before failing.
    pub(crate) max_restarts: u32,
    /// Longest a client may take from its first DISCOVER to its ACK.
    pub(crate) deadline: Duration,
}

impl Timing {
    /// Wait after transmission number `tries` (1 = first) of a message.
    fn rto(&self, tries: u32) -> Duration {
        let doublings = tries.saturating_sub(1).min(16);
        self.rto.saturating_mul(1 << doublings).min(self.max_rto)
    }
}

/// Why a client gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// No OFFER after every DISCOVER retransmission.
    NoOffer,
    /// REQUESTs went unanswered (or were NAKed) and the restarts ran out.
    NoAck,
    /// NAKed more often than the restart limit allows.
    TooManyNaks,
    /// The per-client deadline passed.
    Deadline,
}

impl FailReason {
    /// A short name, as in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoOffer => "no_offer",
            FailReason::NoAck => "no_ack",
            FailReason::TooManyNaks => "too_many_naks",
            FailReason::Deadline => "deadline",
        }
    }
}

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started yet.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST sent for `ip` from `server`, waiting for ACK or NAK.
    Requesting { ip: Ipv4Addr, server: Ipv4Addr },
    /// ACKed.
    Bound,
    /// Gave up.
    Failed(FailReason),
}

/// What the fleet must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing (a reply that does not fit the state, a stale timer).
    Ignore,
    /// Send this message under the current xid and arm the timer for `wait`.
    Send {
        request: Request,
        wait: Duration,
        retransmit: bool,
    },
    /// Start over at DISCOVER under a new xid (after a NAK, or a REQUEST never answered).
    Restart { nak: bool },
    /// The client is bound.
    Bound,
    /// The client gave up.
    Failed(FailReason),
}

/// One client's protocol state.
#[derive(Debug, Clone)]
pub(crate) struct ClientState {
    pub(crate) phase: Phase,
    /// Transmissions of the current message.
    tries: u32,
    /// Restarts at DISCOVER so far.
    pub(crate) restarts: u32,
    /// When the first DISCOVER went out.
    pub(crate) started: Option<Instant>,
}

impl ClientState {
    pub(crate) fn new() -> ClientState {
        ClientState {
            phase: Phase::Init,
            tries: 0,
            restarts: 0,
            started: None,
        }
    }

    /// Whether the client is done (bound or failed).
    pub(crate) fn finished(&self) -> bool {
        matches!(self.phase, Phase::Bound | Phase::Failed(_))
    }

    /// The `secs` field: seconds since the first DISCOVER.
    pub(crate) fn secs(&self, now: Instant) -> u16 {
        self.started.map_or(0, |s| {
            u16::try_from(now.saturating_duration_since(s).as_secs()).unwrap_or(u16::MAX)
        })
    }

    /// Enters SELECTING: the first DISCOVER of the client, or the first after a restart.
    pub(crate) fn discover(&mut self, t: &Timing, now: Instant) -> Step {
        self.started.get_or_insert(now);
        self.phase = Phase::Selecting;
        self.tries = 1;
        Step::Send {
            request: Request::Discover,
            wait: self.wait(t, now),
            retransmit: false,
        }
    }

    /// Counts a restart; `None` when the restart limit is reached.
    pub(crate) fn restart(&mut self, t: &Timing) -> Option<()> {
        if self.restarts >= t.max_restarts {
            return None;
        }
        self.restarts += 1;
        Some(())
    }

    fn deadline(&self, t: &Timing) -> Option<Instant> {
        self.started.map(|s| s + t.deadline)
    }

    /// The timer after a transmission: the retransmission wait, cut short by the deadline.
    fn wait(&self, t: &Timing, now: Instant) -> Duration {
        let rto = t.rto(self.tries);
        match self.deadline(t) {
            Some(d) => rto.min(d.saturating_duration_since(now)),
            None => rto,
        }
    }

    /// A reply for this client's current xid (the fleet has matched xid, chaddr and VLANs).
    pub(crate) fn on_reply(&mut self, t: &Timing, reply: &Reply, now: Instant) -> Step {
        match (self.phase, reply.kind) {
            (Phase::Selecting, ReplyKind::Offer) => {
                // RFC 2131 requires option 54 in an OFFER: the REQUEST must name the chosen
                // server, so an OFFER without it cannot be taken.
                let Some(server) = reply.server else {
                    return Step::Ignore;
                };
                let ip = reply.yiaddr;
                self.phase = Phase::Requesting { ip, server };
                self.tries = 1;
                Step::Send {
                    request: Request::Select { ip, server },
                    wait: self.wait(t, now),
                    retransmit: false,
                }
            }
            (Phase::Requesting { server, .. }, ReplyKind::Ack) => {
                // Only the chosen server's ACK binds (another server's is for a REQUEST it
                // misread); one without an identifier is taken as the chosen server's.
                if reply.server.is_some_and(|s| s != server) {
                    return Step::Ignore;
                }
                self.phase = Phase::Bound;
                Step::Bound
            }
            (Phase::Requesting { .. }, ReplyKind::Nak) => self.start_over(t, true),
            _ => Step::Ignore,
        }
    }

    /// The timer armed by the last [`Step::Send`] expired.
    pub(crate) fn on_timer(&mut self, t: &Timing, now: Instant) -> Step {
        let request = match self.phase {
            Phase::Selecting => Request::Discover,
            Phase::Requesting { ip, server } => Request::Select { ip, server },
            _ => return Step::Ignore,
        };
        if self.deadline(t).is_some_and(|d| now >= d) {
            return self.fail(FailReason::Deadline);
        }
        if self.tries > t.retries {
            return match self.phase {
                Phase::Selecting => self.fail(FailReason::NoOffer),
                _ => self.start_over(t, false),
            };
        }
        self.tries += 1;
        Step::Send {
            request,
            wait: self.wait(t, now),
            retransmit: true,
        }
    }

    /// RFC 2131 section 3.1: a NAKed client, or one whose REQUEST was never answered, returns
    /// to INIT.
    fn start_over(&mut self, t: &Timing, nak: bool) -> Step {
        if self.restart(t).is_none() {
            let why = if nak {
                FailReason::TooManyNaks
            } else {
                FailReason::NoAck
            };
            return self.fail(why);
        }
        self.phase = Phase::Init;
        Step::Restart { nak }
    }

    fn fail(&mut self, why: FailReason) -> Step {
        self.phase = Phase::Failed(why);
        Step::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        rto: Duration::from_secs(1),
        max_rto: Duration::from_secs(4),
        retries: 3,
        max_restarts: 2,
        deadline: Duration::from_secs(30),
    };

    fn reply(kind: ReplyKind, server: Option<[u8; 4]>) -> Reply {
        Reply {
            kind,
            xid: 1,
            mac: "02:00:00:00:00:01".parse().unwrap(),
            yiaddr: Ipv4Addr::new(10, 0, 0, 5),
            server: server.map(Ipv4Addr::from),
            lease_secs: Some(60),
        }
    }

    fn wait_of(s: Step) -> Duration {
        match s {
            Step::Send { wait, .. } => wait,
            other => panic!("expected a send, got {other:?}"),
        }
    }

    #[test]
    fn dora() {
        let now = Instant::now();
        let mut c = ClientState::new();
        assert_eq!(wait_of(c.discover(&T, now)), Duration::from_secs(1));
        let s = c.on_reply(&T, &reply(ReplyKind::Offer, Some([10, 0, 0, 1])), now);
        assert!(matches!(
            s,
            Step::Send {
                request: Request::Select { .. },
                retransmit: false,
                ..
            }
        ));
        // A second OFFER while requesting is ignored, so is an ACK from another server.
        let late = reply(ReplyKind::Offer, Some([10, 0, 0, 2]));
        assert_eq!(c.on_reply(&T, &late, now), Step::Ignore);
        let other = reply(ReplyKind::Ack, Some([10, 0, 0, 2]));
        assert_eq!(c.on_reply(&T, &other, now), Step::Ignore);
        let ack = reply(ReplyKind::Ack, Some([10, 0, 0, 1]));
        assert_eq!(c.on_reply(&T, &ack, now), Step::Bound);
        assert!(c.finished());
        assert_eq!(c.on_timer(&T, now + T.deadline), Step::Ignore);
    }

    #[test]
    fn retransmits_back_off_then_give_up() {
        let now = Instant::now();
        let mut c = ClientState::new();
        c.discover(&T, now);
        let waits: Vec<u64> = (0..3)
            .map(|_| wait_of(c.on_timer(&T, now)).as_secs())
            .collect();
        assert_eq!(waits, [2, 4, 4]);
        assert_eq!(c.on_timer(&T, now), Step::Failed(FailReason::NoOffer));
    }

    #[test]
    fn naks_restart_until_the_limit() {
        let now = Instant::now();
        let mut c = ClientState::new();
        let offer = reply(ReplyKind::Offer, Some([10, 0, 0, 1]));
        let nak = reply(ReplyKind::Nak, None);
        for _ in 0..T.max_restarts {
            c.discover(&T, now);
            c.on_reply(&T, &offer, now);
            assert_eq!(c.on_reply(&T, &nak, now), Step::Restart { nak: true });
        }
        c.discover(&T, now);
        c.on_reply(&T, &offer, now);
        assert_eq!(
            c.on_reply(&T, &nak, now),
            Step::Failed(FailReason::TooManyNaks)
        );
    }

    #[test]
    fn unanswered_request_restarts() {
        let now = Instant::now();
        let mut c = ClientState::new();
        c.discover(&T, now);
        c.on_reply(&T, &reply(ReplyKind::Offer, Some([10, 0, 0, 1])), now);
        for _ in 0..T.retries {
            assert!(matches!(
                c.on_timer(&T, now),
                Step::Send {
                    retransmit: true,
                    ..
                }
            ));
        }
        assert_eq!(c.on_timer(&T, now), Step::Restart { nak: false });
    }

    #[test]
    fn deadline_cuts_waits_and_fails() {
        let now = Instant::now();
        let t = Timing {
            deadline: Duration::from_millis(1500),
            ..T
        };
        let mut c = ClientState::new();
        c.discover(&t, now);
        let w = wait_of(c.on_timer(&t, now + Duration::from_secs(1)));
        assert_eq!(w, Duration::from_millis(500));
        assert_eq!(
            c.on_timer(&t, now + Duration::from_millis(1500)),
            Step::Failed(FailReason::Deadline)
        );
        // An OFFER without a server identifier cannot be requested.
        let mut c = ClientState::new();
        c.discover(&t, now);
        assert_eq!(
            c.on_reply(&t, &reply(ReplyKind::Offer, None), now),
            Step::Ignore
        );
    }
}
