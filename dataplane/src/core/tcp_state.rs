//! IPVS's TCP connection state machine (`net/netfilter/ipvs/ip_vs_proto_tcp.c`).
//!
//! IPVS does not track sequence numbers; it moves a connection between states on the flags of
//! each segment, with one table for segments from the client (INPUT), one for segments from the
//! realserver (OUTPUT), and one for connections whose replies the director never sees
//! (INPUT-ONLY: LVS-DR; IPVS marks every forwarding method but NAT with NOOUTPUT). A state's timeout is the
//! connection's idle timeout. ESTABLISHED and the handshake states count as *active* for the
//! schedulers, every other state as *inactive* ([`TcpState::is_active`]).

use crate::wire::tcp;

/// IPVS TCP states, in IPVS's order (the values index the tables and timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

impl TcpState {
    pub const COUNT: usize = 11;
    pub const ALL: [TcpState; Self::COUNT] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// Whether a connection in this state counts as active for the schedulers (IPVS
    /// `tcp_state_active`, Linux ≥ 4.9: ESTABLISHED and the handshake states).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TcpState::Established | TcpState::SynSent | TcpState::SynRecv | TcpState::SynAck
        )
    }

    /// The name ipvsadm prints in `-L -c`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }
}

/// Which table applies to a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client → realserver (LVS-NAT).
    Input = 0,
    /// Realserver → client (LVS-NAT replies).
    Output = 1,
    /// Client → realserver when the director never sees replies (LVS-DR).
    InputOnly = 2,
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `TABLE[dir][event][current state]` = next state; events are syn, fin, ack, rst.
/// Columns are in TcpState order: NO ES SS SR FW TW CL CW LA LI SA.
const TABLE: [[[TcpState; TcpState::COUNT]; 4]; 3] = [
    // INPUT
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    // OUTPUT
    [
        /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    // INPUT-ONLY
    [
        /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        /* fin */ [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

/// The event row IPVS picks for a flag byte (`tcp_state_idx`): RST beats SYN beats FIN beats
/// ACK; None for a segment with none of them.
const fn event(flags: u8) -> Option<usize> {
    if flags & tcp::RST != 0 {
        Some(3)
    } else if flags & tcp::SYN != 0 {
        Some(0)
    } else if flags & tcp::FIN != 0 {
        Some(1)
    } else if flags & tcp::ACK != 0 {
        Some(2)
    } else {
        None
    }
}

/// The flag bits the state machine looks at.
const EVENT_FLAGS: u8 = tcp::SYN | tcp::FIN | tcp::ACK | tcp::RST;
const _: () = assert!(EVENT_FLAGS < 32);

/// [`next`] for every direction, combination of [`EVENT_FLAGS`] and state (the states
/// padded to 16, what four bits can hold): one load per segment, no branch and no bounds
/// check.
static NEXT: [[[TcpState; 16]; 32]; 3] = {
    let mut t = [[[TcpState::Close; 16]; 32]; 3];
    let mut dir = 0;
    while dir < 3 {
        let mut flags = 0;
        while flags < 32 {
            let mut state = 0;
            while state < TcpState::COUNT {
                t[dir][flags][state] = match event(flags as u8) {
                    Some(ev) => TABLE[dir][ev][state],
                    None => TcpState::Close,
                };
                state += 1;
            }
            flags += 1;
        }
        dir += 1;
    }
    t
};

/// The state after a segment with `flags` travelling in `dir`. A segment with none of
/// SYN/FIN/ACK/RST moves the connection to CLOSE, as IPVS's `set_tcp_state` does.
#[inline(always)]
pub fn next(state: TcpState, dir: Dir, flags: u8) -> TcpState {
    NEXT[dir as usize][(flags & EVENT_FLAGS) as usize][state as usize & 15]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{ACK, FIN, RST, SYN};
    use TcpState::None as NO;

    /// The flat table gives IPVS's table row for every flag byte (any other bits, PSH, URG,
    /// ECE, CWR, ignored) in every direction and state.
    #[test]
    fn the_flat_table_is_ipvs_table_for_every_flag_byte() {
        for dir in [Dir::Input, Dir::Output, Dir::InputOnly] {
            for flags in 0..=255u8 {
                for state in TcpState::ALL {
                    let want = match event(flags) {
                        Some(ev) => TABLE[dir as usize][ev][state as usize],
                        None => TcpState::Close,
                    };
                    assert_eq!(
                        next(state, dir, flags),
                        want,
                        "{dir:?} {flags:#x} {state:?}"
                    );
                }
            }
        }
    }

    fn run(start: TcpState, steps: &[(Dir, u8)]) -> Vec<TcpState> {
        let mut s = start;
        steps
            .iter()
            .map(|&(d, f)| {
                s = next(s, d, f);
                s
            })
            .collect()
    }

    #[test]
    fn nat_handshake_data_client_closes() {
        use Dir::*;
        let states = run(
            NO,
            &[
                (InputOnly, SYN),
                (Output, SYN | ACK),
                (Input, ACK),
                (Input, ACK),
                (Output, ACK),
                (Input, FIN | ACK),
                (Output, ACK),
                (Output, FIN | ACK),
                (Input, ACK),
            ],
        );
        assert_eq!(states, vec![SR, SR, ES, ES, ES, CW, CW, TW, TW]);
    }

    #[test]
    fn nat_server_closes_first() {
        use Dir::*;
        let states = run(
            ES,
            &[
                (Output, FIN | ACK),
                (Input, ACK),
                (Input, FIN | ACK),
                (Output, ACK),
            ],
        );
        assert_eq!(states, vec![FW, FW, TW, TW]);
    }

    #[test]
    fn dr_input_only() {
        use Dir::*;
        let states = run(
            NO,
            &[
                (InputOnly, SYN),
                (InputOnly, ACK),
                (InputOnly, FIN | ACK),
                (InputOnly, ACK),
            ],
        );
        assert_eq!(states, vec![SR, ES, FW, FW]);
    }

    #[test]
    fn rst_closes_from_either_side() {
        assert_eq!(next(ES, Dir::Input, RST), CL);
        assert_eq!(next(ES, Dir::Output, RST | ACK), CL);
        assert_eq!(next(ES, Dir::InputOnly, RST), CL);
    }

    #[test]
    fn retransmitted_syn_stays_syn_recv() {
        assert_eq!(
            run(NO, &[(Dir::InputOnly, SYN), (Dir::InputOnly, SYN)]),
            vec![SR, SR]
        );
    }

    #[test]
    fn simultaneous_close() {
        use Dir::*;
        let states = run(
            ES,
            &[
                (Input, FIN | ACK),
                (Output, FIN | ACK),
                (Input, ACK),
                (Output, ACK),
            ],
        );
        assert_eq!(states, vec![CW, TW, TW, TW]);
    }

    #[test]
    fn no_flags_close_as_in_ipvs() {
        assert_eq!(next(ES, Dir::Input, 0), CL);
        assert_eq!(next(ES, Dir::Input, 0x08 /* PSH alone */), CL);
    }
}
