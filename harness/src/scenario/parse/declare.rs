//! Parsing the declarations: `process A [uid N] [gid N], B`, `needs ...`,
//! `file NAME ["CONTENT"]`, `sysctl NAME = VALUE` and `timeout D`.

use super::*;

impl Parser {
    /// A declaration, after its keyword `kw`.
    pub(super) fn declaration(&mut self, l: &mut Line, kw: &str) -> Result<(), ParseError> {
        match kw {
            "process" => self.process_decl(l),
            "needs" => self.needs_decl(l),
            "file" => self.file_decl(l),
            "sysctl" => {
                let name = self.sysctl_name(l)?;
                if !l.eat(&Tok::Eq) {
                    return Err(self.err(l, format!("missing `=`: {}", found(l)), Some("`sysctl NAME = VALUE`")));
                }
                let value = self.number(l, "the sysctl's value")?;
                self.sc.needs.namespace = true;
                self.sc.sysctls.push((name, value, l.lineno));
                Ok(())
            }
            "timeout" => {
                let col = l.col();
                let (w, _) = self.word(l, "a duration")?;
                let d = parse_duration(&w).ok_or_else(|| {
                    self.err_at(l.lineno, col, format!("bad duration `{w}`"), Some("a duration such as 500ms or 5s"))
                })?;
                self.sc.timeout = Some(d);
                Ok(())
            }
            _ => unreachable!("checked by the caller"),
        }
    }

    /// `process A [uid N] [gid N], B, ...` (after the keyword).
    fn process_decl(&mut self, l: &mut Line) -> Result<(), ParseError> {
        loop {
            let (name, col) = self.word(l, "a process name")?;
            self.bind(l.lineno, col, &name, Kind::Process)?;
            let mut decl = ProcessDecl { name: name.clone(), uid: None, gid: None, forked_from: None, line: l.lineno };
            loop {
                if l.eat_word("uid") {
                    decl.uid = Some(self.small(l, "uid")?);
                    self.sc.needs.root = true;
                } else if l.eat_word("gid") {
                    decl.gid = Some(self.small(l, "gid")?);
                    self.sc.needs.root = true;
                } else {
                    break;
                }
            }
            self.procs.insert(name, ProcState::default());
            self.sc.processes.push(decl);
            if !l.eat(&Tok::Comma) {
                return Ok(());
            }
        }
    }

    /// `needs NEED, ...` (after the keyword): `root`, `namespace`,
    /// `hugepages ...`, `kernel >= X.Y` / `kernel < X.Y`, `program "X"`, `command "X"`.
    fn needs_decl(&mut self, l: &mut Line) -> Result<(), ParseError> {
        loop {
            let (w, col) = self.word(l, "a need")?;
            match w.as_str() {
                "root" => self.sc.needs.root = true,
                "namespace" => self.sc.needs.namespace = true,
                "program" | "command" => self.requirement(l, &w)?,
                "kernel" => self.kernel_need(l)?,
                "hugepages" => self.sc.needs.hugepages = Some(self.need_hugepages(l)?),
                _ => return Err(self.unknown_in(
                    l.lineno,
                    col,
                    format!("unknown need `{w}`"),
                    &w,
                    "`root`, `namespace`, `hugepages [2M|1G] [N]`, `kernel >= X.Y`, `kernel < X.Y`, `program \"NAME\"` or `command \"CMD ARGS\"`",
                )),
            }
            if !l.eat(&Tok::Comma) && l.peek().is_none() {
                return Ok(());
            }
        }
    }

    /// `file NAME ["CONTENT"]` (after the keyword): a file made in the
    /// scenario's directory before it starts.
    fn file_decl(&mut self, l: &mut Line) -> Result<(), ParseError> {
        let col = l.col();
        let name = match l.peek() {
            Some(Tok::Str(_)) => self.text(l, "a file name")?,
            _ => self.word(l, "a file name")?.0,
        };
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(self.err_at(
                l.lineno,
                col,
                format!("file `{name}` must stay inside the scenario directory"),
                Some("a relative path without `..`"),
            ));
        }
        let content =
            if matches!(l.peek(), Some(Tok::Str(_))) { self.text(l, "the file's content")? } else { String::new() };
        self.sc.files.push(FileDecl { name, content });
        Ok(())
    }
}
