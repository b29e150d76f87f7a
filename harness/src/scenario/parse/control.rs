//! Parsing the control forms: the raw `shmctl` and its answer fields,
//! `sysctl`, `rlimit`, `umask`, `meminfo`, `needs hugepages`, and the raw `flags` / modes of
//! `create` and `open`.

use super::{found, Kind, Line, ParseError, Parser};
use crate::scenario::ast::{CtlBuf, CtlField, CtlTarget, HugeSize, HugepagesNeed, InfoField, Op, RlimitResource};
use crate::scenario::lexer::Tok;
use crate::sysv::{raw, ShmctlCmd, Sysctl};

const COMMANDS: &str =
    "IPC_STAT, IPC_SET, IPC_RMID, IPC_INFO, SHM_INFO, SHM_STAT, SHM_STAT_ANY, SHM_LOCK, SHM_UNLOCK or a number";

impl Parser {
    /// A control step, after its keyword `kw`: `shmctl`, `sysctl`, `rlimit`,
    /// `umask`, `meminfo`.
    pub(super) fn control_op(&mut self, l: &mut Line, kw: &str) -> Result<Op, ParseError> {
        match kw {
            "shmctl" => self.shmctl_op(l),
            "sysctl" => {
                let name = self.sysctl_name(l)?;
                let value = if l.eat(&Tok::Eq) { Some(self.signed_number(l, "the sysctl's value")?) } else { None };
                Ok(Op::Sysctl { name, value })
            }
            "rlimit" => self.rlimit_op(l),
            "umask" => self.umask_op(l),
            "meminfo" => self.meminfo_op(l),
            _ => unreachable!("Parser::op sends only control keywords here"),
        }
    }

    /// A sysctl's name: `shmmax`, `shmall`, `shmmni`, `shm_rmid_forced` or `shm_next_id`.
    pub(super) fn sysctl_name(&self, l: &mut Line) -> Result<Sysctl, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a sysctl name")?;
        Sysctl::from_name(&w).ok_or_else(|| {
            self.unknown_in(
                l.lineno,
                col,
                format!("unknown sysctl `{w}`"),
                &w,
                "shmmax, shmall, shmmni, shm_rmid_forced or shm_next_id",
            )
        })
    }

    /// `shmctl [T =] TARGET CMD [badbuf | buffer null | buffer -1]` (after the keyword).
    pub(super) fn shmctl_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let binding = self.optional_binding(l);
        let tcol = l.col();
        let target = match l.peek_word() {
            Some("-") => {
                l.pos += 1;
                CtlTarget::Number(0)
            }
            Some(w) if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                let w = w.to_string();
                l.pos += 1;
                let n = crate::scenario::parse_number_literal(&w).and_then(|n| i32::try_from(n).ok());
                CtlTarget::Number(n.ok_or_else(|| {
                    self.err_at(l.lineno, tcol, format!("bad shmctl target `{w}`"), Some("an int such as 0 or 32768"))
                })?)
            }
            Some(_) => CtlTarget::Segment(self.use_name(l, Kind::Segment)?),
            None => {
                return Err(self.err(
                    l,
                    format!("missing the shmctl target: {}", found(l)),
                    Some("a segment name, a number (an index or id) or `-`"),
                ))
            }
        };
        let ccol = l.col();
        let (w, _) = self.word(l, "a shmctl command")?;
        let cmd = match ShmctlCmd::from_name(&w) {
            Some(c) => c,
            None if w.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                let n =
                    crate::scenario::parse_number_literal(&w).and_then(|n| i32::try_from(n).ok()).ok_or_else(|| {
                        self.err_at(
                            l.lineno,
                            ccol,
                            format!("bad shmctl command `{w}`"),
                            Some("a command name, or an int from -2147483648 to 2147483647"),
                        )
                    })?;
                match ShmctlCmd::from_raw(n) {
                    ShmctlCmd::Other(n) => ShmctlCmd::Other(n),
                    named => {
                        return Err(self.err_at(
                            l.lineno,
                            ccol,
                            format!("command {w} is {named}: write `{named}`"),
                            Some("a command name, or a number that is no command (0x102, -1)"),
                        ))
                    }
                }
            }
            None => return Err(self.unknown_in(l.lineno, ccol, format!("unknown shmctl command `{w}`"), &w, COMMANDS)),
        };
        let buffer = self.ctl_buffer(l)?;
        if let Some((name, col)) = &binding {
            if !matches!(cmd, ShmctlCmd::ShmStat | ShmctlCmd::ShmStatAny) || buffer != CtlBuf::Given {
                return Err(self.err_at(
                    l.lineno,
                    *col,
                    format!("only SHM_STAT and SHM_STAT_ANY return a shmid to bind to `{name}`"),
                    Some("`shmctl T = INDEX SHM_STAT_ANY`, or no `NAME =`"),
                ));
            }
            self.bind(l.lineno, *col, name, Kind::Segment)?;
        }
        Ok(Op::Shmctl { name: binding.map(|(n, _)| n), target, cmd, buffer })
    }

    /// An optional `badbuf`, `buffer null` or `buffer -1`.
    fn ctl_buffer(&self, l: &mut Line) -> Result<CtlBuf, ParseError> {
        if l.eat_word("badbuf") {
            return Ok(CtlBuf::NoAccess);
        }
        if !l.eat_word("buffer") {
            return Ok(CtlBuf::Given);
        }
        let col = l.col();
        let (w, _) = self.word(l, "`null` or `-1` after `buffer`")?;
        match w.as_str() {
            "null" => Ok(CtlBuf::Null),
            "-1" => Ok(CtlBuf::AllOnes),
            _ => Err(self.err_at(
                l.lineno,
                col,
                format!("bad shmctl buffer `{w}`"),
                Some("`buffer null` (NULL), `buffer -1` ((void *)-1), or `badbuf` (a page without access)"),
            )),
        }
    }

    /// The fields a raw `shmctl` answers, checked against its command.
    pub(super) fn ctl_fields(&mut self, l: &mut Line, cmd: ShmctlCmd) -> Result<Vec<CtlField>, ParseError> {
        let mut fields = Vec::new();
        while l.peek().is_some() {
            let col = l.col();
            let (w, _) = self.word(l, "a shmctl answer field")?;
            let misfit = |p: &Parser, what: &str| {
                Err(p.err_at(l.lineno, col, format!("`{w}` is {what}; {cmd} does not answer it"), None))
            };
            let field = if w == "id" {
                if !matches!(cmd, ShmctlCmd::ShmStat | ShmctlCmd::ShmStatAny) {
                    return misfit(self, "the shmid SHM_STAT and SHM_STAT_ANY return");
                }
                CtlField::Id(self.use_name(l, Kind::Segment)?)
            } else if let Some(f) = InfoField::from_name(&w) {
                let fits = match cmd {
                    ShmctlCmd::IpcInfo => f.of_ipc_info() || f == InfoField::MaxIndex,
                    ShmctlCmd::ShmInfo => !f.of_ipc_info(),
                    _ => false,
                };
                if !fits {
                    return misfit(self, if f.of_ipc_info() { "an IPC_INFO field" } else { "a SHM_INFO field" });
                }
                CtlField::Info(f, self.num_exp(l, &format!("the {w}"))?)
            } else {
                if !cmd.reads_stat() {
                    return match cmd {
                        ShmctlCmd::IpcInfo | ShmctlCmd::ShmInfo => Err(self.unknown_in(
                            l.lineno,
                            col,
                            format!("unknown {cmd} field `{w}`"),
                            &w,
                            info_fields(cmd),
                        )),
                        _ => Err(self.err_at(
                            l.lineno,
                            col,
                            format!("shmctl {cmd} answers only ok or an errno, not fields"),
                            Some("`ok` or an errno such as EINVAL"),
                        )),
                    };
                }
                l.pos -= 1;
                CtlField::Stat(self.stat_field(l)?)
            };
            fields.push(field);
            l.eat(&Tok::Comma);
        }
        if fields.is_empty() {
            return Err(self.err(l, "no fields", Some("fields such as `used_ids 1` or `nattch 0, id s`")));
        }
        Ok(fields)
    }

    /// `rlimit RESOURCE SOFT [HARD]` (after the keyword).
    pub(super) fn rlimit_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a resource")?;
        let resource = match w.as_str() {
            "memlock" => RlimitResource::Memlock,
            "as" => RlimitResource::As,
            "nofile" => RlimitResource::Nofile,
            _ => {
                return Err(self.unknown_in(
                    l.lineno,
                    col,
                    format!("unknown resource `{w}`"),
                    &w,
                    "memlock, as or nofile",
                ))
            }
        };
        let soft = self.limit(l)?;
        let hard = if l.at_end_of_op() { None } else { Some(self.limit(l)?) };
        Ok(Op::Rlimit { resource, soft, hard })
    }

    fn limit(&self, l: &mut Line) -> Result<Option<u64>, ParseError> {
        if l.eat_word("inf") {
            return Ok(None);
        }
        let col = l.col();
        let n = self.number(l, "a limit (bytes or count, or `inf`)")?;
        if n == u64::MAX {
            return Err(self.err_at(l.lineno, col, "this value is RLIM_INFINITY", Some("`inf`")));
        }
        Ok(Some(n))
    }

    /// `umask M` (after the keyword).
    pub(super) fn umask_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        Ok(Op::Umask { mask: self.mode(l)? })
    }

    /// `meminfo NAME` (after the keyword).
    pub(super) fn meminfo_op(&mut self, l: &mut Line) -> Result<Op, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a /proc/meminfo field such as HugePages_Free")?;
        if !w.starts_with(|c: char| c.is_ascii_alphabetic())
            || !w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("bad /proc/meminfo field `{w}`"),
                Some("a field name such as HugePages_Free or Hugepagesize"),
            ));
        }
        Ok(Op::Meminfo { field: w })
    }

    /// `hugepages [2M|1G] [N]` in `needs` (after the word).
    pub(super) fn need_hugepages(&mut self, l: &mut Line) -> Result<HugepagesNeed, ParseError> {
        let size = self.huge_size(l);
        let pages = match l.peek() {
            Some(Tok::Word(_)) => {
                let col = l.col();
                let n = self.number(l, "the number of free huge pages")?;
                if n == 0 {
                    return Err(self.err_at(l.lineno, col, "needs 0 huge pages is no need", Some("1 or more")));
                }
                n
            }
            _ => 1,
        };
        Ok(HugepagesNeed { size, pages })
    }

    /// An optional `2M` / `1G`.
    pub(super) fn huge_size(&self, l: &mut Line) -> Option<HugeSize> {
        if l.eat_word("2M") {
            Some(HugeSize::Mb2)
        } else if l.eat_word("1G") {
            Some(HugeSize::Gb1)
        } else {
            None
        }
    }

    /// `flags 0x...` (after the word): raw `shmget` bits. `for_open`
    /// refuses `IPC_CREAT` (an `open` never creates: write `create`).
    pub(super) fn raw_flags(&self, l: &mut Line, for_open: bool) -> Result<i32, ParseError> {
        let col = l.col();
        let n = self.number(l, "the raw flags")?;
        let flags = u32::try_from(n).map(|f| f as i32).map_err(|_| {
            self.err_at(l.lineno, col, format!("flags {n:#x} do not fit in 32 bits"), Some("such as 0x1000"))
        })?;
        if for_open && flags & raw::IPC_CREAT != 0 {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("flags {flags:#x} include IPC_CREAT (0x200): an open never creates"),
                Some("`create` to create, or flags without 0x200"),
            ));
        }
        Ok(flags)
    }

    /// A mode for `create`: octal up to `07777`, the bits above `0777` passed
    /// raw (they are `IPC_CREAT`, `IPC_EXCL` and `SHM_HUGETLB` to `shmget`).
    pub(super) fn raw_mode(&self, l: &mut Line) -> Result<u16, ParseError> {
        let col = l.col();
        let (w, _) = self.word(l, "a mode")?;
        u16::from_str_radix(w.strip_prefix("0o").unwrap_or(&w), 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| {
            self.err_at(l.lineno, col, format!("bad mode `{w}`"), Some("octal bits up to 07777, such as 0600"))
        })
    }
}

/// The fields of an info command, for error messages.
fn info_fields(cmd: ShmctlCmd) -> &'static str {
    if cmd == ShmctlCmd::IpcInfo {
        "shmmax, shmmin, shmmni, shmseg, shmall or max_index"
    } else {
        "used_ids, shm_tot, shm_rss, shm_swp or max_index"
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::{parse, CtlField, CtlTarget, Expect, InfoField, NumExp, Op};
    use crate::sysv::ShmctlCmd;

    const BASE: &str = "process A\nA: create s = private size 4096\n";

    /// The error for BASE plus `line` (line 3).
    fn err(line: &str) -> String {
        parse("t.scn", &format!("{BASE}{line}\n")).unwrap_err().to_string()
    }

    fn ok(line: &str) -> crate::scenario::Step {
        let sc = parse("t.scn", &format!("{BASE}{line}\n")).unwrap_or_else(|e| panic!("{line}: {e}"));
        sc.steps.last().unwrap().clone()
    }

    #[test]
    fn shmctl_forms() {
        let s = ok("A: shmctl t = 0 SHM_STAT_ANY => id s, size 4096, index 0");
        assert_eq!(
            s.op,
            Op::Shmctl {
                name: Some("t".into()),
                target: CtlTarget::Number(0),
                cmd: ShmctlCmd::ShmStatAny,
                buffer: crate::scenario::CtlBuf::Given
            }
        );
        let s = ok("A: shmctl - SHM_INFO => used_ids >= 1, max_index {m}");
        assert!(
            matches!(&s.expect, Expect::Ctl(f) if f[0] == CtlField::Info(InfoField::UsedIds, NumExp::Cmp(crate::scenario::CmpOp::Ge, crate::scenario::NumValue::Lit(1))))
        );
        assert!(matches!(ok("A: shmctl s 99 => EINVAL").op, Op::Shmctl { cmd: ShmctlCmd::Other(99), .. }));
        // Any int: IPC_64 is not stripped by the shmctl system call, and a
        // negative command is the kernel's `cmd < 0` path.
        assert!(matches!(ok("A: shmctl s 0x102 => EINVAL").op, Op::Shmctl { cmd: ShmctlCmd::Other(0x102), .. }));
        assert!(matches!(ok("A: shmctl s 0x100 => EINVAL").op, Op::Shmctl { cmd: ShmctlCmd::Other(0x100), .. }));
        assert!(matches!(ok("A: shmctl s -1 => EINVAL").op, Op::Shmctl { cmd: ShmctlCmd::Other(-1), .. }));
        let min = ok("A: shmctl s -2147483648 => EINVAL").op;
        assert!(matches!(min, Op::Shmctl { cmd: ShmctlCmd::Other(i32::MIN), .. }));
        use crate::scenario::CtlBuf;
        assert!(matches!(ok("A: shmctl s IPC_STAT badbuf => EFAULT").op, Op::Shmctl { buffer: CtlBuf::NoAccess, .. }));
        assert!(matches!(ok("A: shmctl s IPC_STAT buffer null => EFAULT").op, Op::Shmctl { buffer: CtlBuf::Null, .. }));
        assert!(matches!(ok("A: shmctl s IPC_SET buffer -1 => EFAULT").op, Op::Shmctl { buffer: CtlBuf::AllOnes, .. }));
        // A number target implies a private namespace, except for the INFO commands.
        let ns = |l: &str| parse("t.scn", &format!("{BASE}{l}\n")).unwrap().needs.namespace;
        assert!(ns("A: shmctl 0 IPC_STAT => EINVAL | ok"));
        assert!(!ns("A: shmctl - IPC_INFO"));
        assert!(!ns("A: shmctl s IPC_RMID"));
    }

    #[test]
    fn shmctl_misuse_is_reported_where_it_is() {
        // Target missing, bad, or a name of another kind.
        assert!(err("A: shmctl").starts_with("t.scn:3:10: missing the shmctl target"), "{}", err("A: shmctl"));
        assert!(err("A: shmctl 99999999999 IPC_STAT").starts_with("t.scn:3:11: bad shmctl target"));
        assert!(err("A: shmctl A IPC_STAT").contains("`A` is a process"));
        // Command unknown, missing, or a number that is a named command.
        assert!(err("A: shmctl s IPC_NOPE").starts_with("t.scn:3:13: unknown shmctl command `IPC_NOPE`"));
        assert!(err("A: shmctl s").starts_with("t.scn:3:12: missing a shmctl command"));
        let e = err("A: shmctl s 0");
        assert!(e.starts_with("t.scn:3:13: command 0 is IPC_RMID: write `IPC_RMID`"), "{e}");
        assert!(e.contains("(expected a command name, or a number that is no command"), "{e}");
        assert!(err("A: shmctl s 2").contains("is IPC_STAT"));
        let e = err("A: shmctl s 0x80000000");
        assert!(e.starts_with("t.scn:3:13: bad shmctl command `0x80000000`"), "{e}");
        assert!(err("A: shmctl s -2147483649").contains("bad shmctl command"));
        assert!(err("A: shmctl s --1").contains("bad shmctl command"));
        // A binding for a command that returns no shmid.
        let e = err("A: shmctl t = s IPC_STAT");
        assert!(e.starts_with("t.scn:3:11: only SHM_STAT and SHM_STAT_ANY return a shmid to bind to `t`"), "{e}");
        assert!(err("A: shmctl t = 0 SHM_STAT badbuf => EFAULT").contains("only SHM_STAT"));
        // Fields the command does not answer.
        let e = err("A: shmctl - IPC_INFO => used_ids 1");
        assert!(e.starts_with("t.scn:3:25: `used_ids` is a SHM_INFO field; IPC_INFO does not answer it"), "{e}");
        assert!(err("A: shmctl - SHM_INFO => shmmax 1").contains("is an IPC_INFO field"));
        assert!(err("A: shmctl s IPC_STAT => id s").contains("SHM_STAT_ANY return; IPC_STAT does not answer it"));
        assert!(err("A: shmctl - IPC_INFO => size 1").contains("unknown IPC_INFO field `size`"));
        assert!(err("A: shmctl s IPC_RMID => size 1").contains("shmctl IPC_RMID answers only ok or an errno"));
        assert!(err("A: shmctl s 99 => size 1").contains("shmctl 99 answers only ok or an errno"));
        assert!(err("A: shmctl 0 SHM_STAT => nattch").contains("missing the nattch"));
        // A buffer that is neither null nor -1, or missing.
        let e = err("A: shmctl s IPC_STAT buffer 0");
        assert!(e.starts_with("t.scn:3:29: bad shmctl buffer `0`"), "{e}");
        assert!(e.contains("(expected `buffer null` (NULL), `buffer -1`"), "{e}");
        assert!(err("A: shmctl s IPC_STAT buffer").starts_with("t.scn:3:28: missing `null` or `-1`"));
        assert!(err("A: shmctl t = 0 SHM_STAT buffer null => EFAULT").contains("only SHM_STAT"));
        // Extra words.
        assert!(err("A: shmctl s IPC_STAT nope").contains("unexpected input"));
    }

    #[test]
    fn rlimit_umask_meminfo_and_needs() {
        assert!(matches!(ok("A: rlimit memlock 64K").op, Op::Rlimit { soft: Some(65536), hard: None, .. }));
        assert!(matches!(ok("A: rlimit as inf inf").op, Op::Rlimit { soft: None, hard: Some(None), .. }));
        assert!(err("A: rlimit stack 1").starts_with("t.scn:3:11: unknown resource `stack`"));
        assert!(err("A: rlimit nofile").contains("missing a limit"));
        assert!(err("A: rlimit nofile 18446744073709551615").contains("this value is RLIM_INFINITY"));
        assert!(err("A: rlimit nofile 1 2 3").contains("unexpected input"));
        assert!(matches!(ok("A: umask 0077").op, Op::Umask { mask: 0o77 }));
        assert!(err("A: umask 0888").contains("bad mode `0888`"));
        assert!(matches!(ok("A: meminfo HugePages_Free => >= 0").op, Op::Meminfo { .. }));
        assert!(err("A: meminfo 1x").contains("bad /proc/meminfo field"));
        assert!(err("A: meminfo MemTotal => ENOENT").contains("has no errno to expect"));
        let n = |t: &str| parse("t.scn", &format!("{t}\n{BASE}")).map(|s| s.needs.hugepages);
        let got = n("needs hugepages 2M 3").unwrap().unwrap();
        assert_eq!((got.size, got.pages), (Some(crate::scenario::HugeSize::Mb2), 3));
        assert_eq!(n("needs root, hugepages").unwrap().unwrap().pages, 1);
        assert!(n("needs hugepages 0").unwrap_err().to_string().contains("needs 0 huge pages"));
        assert!(n("needs hugepages 2M x").unwrap_err().to_string().contains("bad number `x`"));
    }

    #[test]
    fn flags_and_modes() {
        let s = ok("A: create t = private size 1 mode 01640 hugetlb 1G flags 0x1000");
        assert!(matches!(
            s.op,
            Op::Create {
                mode: 0o1640,
                hugetlb: true,
                huge_size: Some(crate::scenario::HugeSize::Gb1),
                flags: Some(0x1000),
                ..
            }
        ));
        let s = ok("A: open t = 0x1234 size 1 mode 0400 excl flags 0x1000");
        assert!(matches!(s.op, Op::Open { mode: Some(0o400), excl: true, flags: Some(0x1000), size: 1, .. }));
        assert!(err("A: open 0x1234 flags 0x200").contains("include IPC_CREAT (0x200): an open never creates"));
        assert!(err("A: open 0x1234 mode 01600").contains("bad mode `01600`"));
        assert!(err("A: create private size 1 mode 010000").contains("bad mode `010000`"));
        assert!(err("A: create private size 1 flags 0x100000000").contains("do not fit in 32 bits"));
        assert!(err("A: open 0x1234 nope").contains("`size`, `mode`, `excl`, `flags` or `=>`"));
        assert!(matches!(ok("A: set s mode 03777").op, Op::Set { mode: Some(0o3777), .. }));
        // The stat field `mode` stays the permission bits.
        assert!(err("A: stat s => mode 01600").contains("bad mode"));
    }
}
