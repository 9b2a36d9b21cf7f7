//! Reloads: the commands that turn what one source owns into a file's new version, touching
//! only what differs.

use super::*;
use xlvs_dataplane::core::tcp_state::TcpState;

impl ServiceTable {
    /// The commands that make this table's part owned by `source` equal to `target` (the
    /// file's new version, read into an empty table): a service of `source` that `target` no
    /// longer has goes; a service of `target` is added, or edited where it differs (whoever
    /// owns it now); a service whose options and realservers are the same gets no command, so
    /// it keeps its published form, scheduler position and connections. What other sources
    /// own is left alone. Deletions come first (a fwmark group entry may move from one mark
    /// to another).
    pub fn diff(&self, target: &ServiceTable, source: &Source) -> Vec<Command> {
        let mut out = Vec::new();
        let entries = |t: &ServiceTable| -> Vec<(u32, MarkMember)> {
            t.marks
                .iter()
                .flat_map(|(m, g)| g.iter().map(move |e| (*m, *e)))
                .collect()
        };
        let (old_marks, new_marks) = (entries(self), entries(target));
        for (mark, member) in old_marks.iter().filter(|e| {
            !new_marks.contains(e) && self.mark_sources.get(&e.1).is_none_or(|s| s == source)
        }) {
            out.push(Command::DelMark {
                mark: *mark,
                member: *member,
            });
        }
        for (key, _) in self
            .services
            .iter()
            .filter(|(k, s)| &s.source == source && !target.services.contains_key(k))
        {
            out.push(Command::DelService { key: *key });
        }
        for (key, want) in &target.services {
            let add = |d: &DestEntry| Command::AddDest {
                key: *key,
                dest: d.spec(),
            };
            let Some(have) = self.services.get(key) else {
                out.push(Command::AddService {
                    key: *key,
                    opts: want.opts(),
                });
                // Oldest first, so the realservers end up in the same (IPVS) order.
                out.extend(want.dests.iter().rev().map(add));
                continue;
            };
            if have.opts() != want.opts() {
                out.push(Command::EditService {
                    key: *key,
                    opts: want.opts(),
                });
            }
            for d in &have.dests {
                if !want.dests.iter().any(|w| w.same(d.addr, d.port)) {
                    out.push(Command::DelDest {
                        key: *key,
                        addr: d.addr,
                        port: d.port,
                    });
                }
            }
            for w in want.dests.iter().rev() {
                match have.dests.iter().find(|d| d.same(w.addr, w.port)) {
                    Some(d) if d.spec() == w.spec() => {}
                    Some(_) => out.push(Command::EditDest {
                        key: *key,
                        dest: w.spec(),
                    }),
                    None => out.push(add(w)),
                }
            }
        }
        for (mark, member) in new_marks.iter().filter(|e| !old_marks.contains(e)) {
            out.push(Command::AddMark {
                mark: *mark,
                member: *member,
            });
        }
        // The timeouts change if the file sets them, or set them before and no longer does
        // (back to the defaults).
        let owned = self.timeouts_source.as_ref() == Some(source);
        let want = match &target.timeouts_source {
            Some(_) => Some(target.timeouts),
            None if owned => Some(Timeouts::default()),
            None => None,
        };
        if let Some(t) = want.filter(|t| *t != self.timeouts) {
            out.push(Command::SetTimeouts {
                tcp: t.tcp[TcpState::Established as usize],
                tcpfin: t.tcp[TcpState::FinWait as usize],
                udp: t.udp,
            });
        }
        out
    }

    /// Brings what `source` owns to `target` (see [`ServiceTable::diff`]), all or nothing, and makes
    /// `source` the owner of everything `target` holds. Returns the commands applied; an
    /// error's message names the one that failed (none if the result as a whole does not fit
    /// the steering maps).
    pub fn reload(
        &mut self,
        target: &ServiceTable,
        source: &Source,
    ) -> Result<Vec<Command>, CmdError> {
        let diff = self.diff(target, source);
        let mut next = self.clone();
        next.apply_all(&diff, source).map_err(|(i, e)| match i {
            Some(i) => CmdError {
                msg: format!("applying `{}`: {}", diff[i], e.msg),
                ..e
            },
            None => e,
        })?;
        for key in target.services.keys() {
            if let Some(s) = next.services.get_mut(key) {
                s.source = source.clone();
            }
        }
        for member in target.mark_sources.keys() {
            next.mark_sources.insert(*member, source.clone());
        }
        if target.timeouts_source.is_some() {
            next.timeouts_source = Some(source.clone());
        } else if next.timeouts_source.as_ref() == Some(source) {
            next.timeouts_source = None;
        }
        *self = next;
        Ok(diff)
    }
}
