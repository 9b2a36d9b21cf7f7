//! The table's edit verbs: one function per ipvsadm command, applied by
//! [`ServiceTable::apply_all`] (which checks the result against the steering maps).

use super::*;
use xlvs_dataplane::core::tcp_state::TcpState;

impl ServiceTable {
    /// Applies a table-changing command; what it adds belongs to `source`. Listing commands
    /// are not handled here.
    pub(super) fn apply(&mut self, cmd: &Command, source: &Source) -> Result<(), CmdError> {
        match cmd {
            Command::AddService { key, opts } => self.add_service(key, opts, source),
            Command::EditService { key, opts } => self.edit_service(key, opts),
            Command::DelService { key } => self.del_service(key),
            Command::Clear => {
                self.clear();
                Ok(())
            }
            Command::AddDest { key, dest } => self.add_dest(key, dest),
            Command::EditDest { key, dest } => self.edit_dest(key, dest),
            Command::DelDest { key, addr, port } => self.del_dest(key, *addr, *port),
            Command::SetTimeouts { tcp, tcpfin, udp } => {
                self.set_timeouts([*tcp, *tcpfin, *udp], source);
                Ok(())
            }
            Command::AddMark { mark, member } => self.add_mark(*mark, member, source),
            Command::DelMark { mark, member } => self.del_mark(*mark, member),
            _ => Err(CmdError::op("not a table command")),
        }
    }

    /// `-A`.
    pub(super) fn add_service(
        &mut self,
        key: &SvcKey,
        opts: &ServiceOpts,
        source: &Source,
    ) -> Result<(), CmdError> {
        if self.services.contains_key(key) {
            return Err(CmdError::op("Service already exists"));
        }
        self.services.insert(
            *key,
            ServiceEntry {
                source: source.clone(),
                sched: opts.sched,
                flags: SchedFlags::default(),
                persist: None,
                sorry: None,
                dests: Vec::new(),
                built: None,
                gone: Totals::default(),
                zero: Totals::default(),
                est: Estimator::default(),
            },
        );
        self.set_opts(key, opts);
        Ok(())
    }

    /// `-E` (the service keeps its source).
    pub(super) fn edit_service(
        &mut self,
        key: &SvcKey,
        opts: &ServiceOpts,
    ) -> Result<(), CmdError> {
        if !self.services.contains_key(key) {
            return Err(CmdError::op("No such service"));
        }
        self.set_opts(key, opts);
        Ok(())
    }

    /// Sets a service's `-A`/`-E` options; a replaced sorry server is retired.
    pub(super) fn set_opts(&mut self, key: &SvcKey, opts: &ServiceOpts) {
        let old_sorry = self.services.get_mut(key).and_then(|s| s.sorry.take());
        let sorry = match (&opts.sorry, old_sorry) {
            (Some(spec), Some(mut old)) if old.same(spec.addr, spec.port) => {
                old.update(spec);
                Some(old)
            }
            (spec, old) => {
                if let Some(old) = old {
                    self.retired.push((*key, old));
                }
                spec.as_ref().map(|spec| self.revive(key, spec))
            }
        };
        let svc = self.services.get_mut(key).expect("service exists");
        svc.sched = opts.sched;
        svc.flags = opts.flags;
        svc.persist = opts.persist;
        svc.sorry = sorry;
        svc.built = None;
    }

    /// `-D`.
    pub(super) fn del_service(&mut self, key: &SvcKey) -> Result<(), CmdError> {
        // IPVS drops the connections of a deleted service; nothing to keep steering but its
        // retired realservers.
        self.services
            .remove(key)
            .ok_or_else(|| CmdError::op("No such service"))?;
        self.orphan_retired(Some(key));
        Ok(())
    }

    /// `-C`: every service and the fwmark groups too (they are part of the table `-S` saves).
    pub(super) fn clear(&mut self) {
        self.services.clear();
        self.marks.clear();
        self.mark_sources.clear();
        self.orphan_retired(None);
    }

    /// `-a`: the newest realserver goes first, as IPVS adds at the head.
    pub(super) fn add_dest(&mut self, key: &SvcKey, dest: &DestSpec) -> Result<(), CmdError> {
        check_thresholds(dest)?;
        let svc = self
            .services
            .get(key)
            .ok_or_else(|| CmdError::op("Service not defined"))?;
        if svc.dests.iter().any(|d| d.same(dest.addr, dest.port)) {
            return Err(CmdError::op("Destination already exists"));
        }
        let d = self.revive(key, dest);
        let svc = self.services.get_mut(key).expect("checked above");
        svc.dests.insert(0, d);
        svc.built = None;
        Ok(())
    }

    /// `-e`.
    pub(super) fn edit_dest(&mut self, key: &SvcKey, dest: &DestSpec) -> Result<(), CmdError> {
        check_thresholds(dest)?;
        let svc = self
            .services
            .get_mut(key)
            .ok_or_else(|| CmdError::op("Service not defined"))?;
        let d = svc
            .dests
            .iter_mut()
            .find(|d| d.same(dest.addr, dest.port))
            .ok_or_else(|| CmdError::op("No such destination"))?;
        d.update(dest);
        svc.built = None;
        Ok(())
    }

    /// `-d`: the realserver is retired (still steered while connections use it).
    pub(super) fn del_dest(
        &mut self,
        key: &SvcKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<(), CmdError> {
        let svc = self
            .services
            .get_mut(key)
            .ok_or_else(|| CmdError::op("Service not defined"))?;
        let i = svc
            .dests
            .iter()
            .position(|d| d.same(addr, port))
            .ok_or_else(|| CmdError::op("No such destination"))?;
        let d = svc.dests.remove(i);
        svc.built = None;
        self.retired.push((*key, d));
        Ok(())
    }

    /// `--set tcp tcpfin udp`: 0 leaves a timeout as it is.
    pub(super) fn set_timeouts(&mut self, [tcp, tcpfin, udp]: [u32; 3], source: &Source) {
        if tcp > 0 {
            self.timeouts.tcp[TcpState::Established as usize] = tcp;
        }
        if tcpfin > 0 {
            self.timeouts.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if udp > 0 {
            self.timeouts.udp = udp;
        }
        self.timeouts_source = Some(source.clone());
    }

    /// `--add-mark`: entries of every mark must not overlap.
    pub(super) fn add_mark(
        &mut self,
        mark: u32,
        member: &MarkMember,
        source: &Source,
    ) -> Result<(), CmdError> {
        if let Some((m, other)) = self
            .marks
            .iter()
            .flat_map(|(m, v)| v.iter().map(move |o| (m, o)))
            .find(|(_, o)| o.overlaps(member))
        {
            return Err(CmdError::op(format!(
                "fwmark group entry {member} overlaps {other} of mark {m}"
            )));
        }
        let group = self.marks.entry(mark).or_default();
        group.push(*member);
        group.sort();
        self.mark_sources.insert(*member, source.clone());
        Ok(())
    }

    /// `--delete-mark`.
    pub(super) fn del_mark(&mut self, mark: u32, member: &MarkMember) -> Result<(), CmdError> {
        let group = self
            .marks
            .get_mut(&mark)
            .filter(|g| g.contains(member))
            .ok_or_else(|| CmdError::op("No such fwmark group entry"))?;
        group.retain(|m| m != member);
        if group.is_empty() {
            self.marks.remove(&mark);
        }
        self.mark_sources.remove(member);
        Ok(())
    }
}

/// IPVS refuses a lower threshold above the upper one (`-ERANGE`).
fn check_thresholds(d: &DestSpec) -> Result<(), CmdError> {
    if d.l_threshold > d.u_threshold {
        return Err(CmdError::op(
            "lower threshold is higher than upper threshold",
        ));
    }
    Ok(())
}
