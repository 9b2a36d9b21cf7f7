//! keepalived.conf's lexical layer: lines, comments, quotes, braces and `include`, as
//! keepalived's `lib/parser.c` reads them, flattened into one stream of [`Item`]s that each
//! know their file and line.
//!
//! keepalived reads a file line by line. On each line a comment starts at the first `!` or
//! `#` outside `"…"` (`\!` and `\#` outside quotes stand for the characters themselves); a
//! line that then starts with `include` names a glob of files read in its place; and the rest
//! is cut at each `{` and `}` outside quotes, so braces need no surrounding spaces. What lies
//! between braces is one statement: words split on whitespace, where `"…"` is one word
//! without its quotes (no escapes). A statement's words never run over a line end.
//!
//! keepalived 2.x changes directory to the directory of each file it opens, so a relative
//! `include` is resolved against the directory of the file that holds it; the same is done
//! here without changing the process's directory.

use std::path::{Path, PathBuf};

use super::ConfError;

/// What a line holds once cut at its braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A statement: its words, and the statement's text as written (quotes kept), which
    /// script keywords split again with keepalived's quoting and escape rules.
    Words { words: Vec<String>, raw: String },
    /// `{`.
    Open,
    /// `}`.
    Close,
}

/// A token and where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub tok: Tok,
    /// Index into [`Lexed::files`].
    pub file: usize,
    /// 1-based line number.
    pub line: usize,
}

/// The token stream of a file and everything it includes.
#[derive(Debug, Default)]
pub(crate) struct Lexed {
    /// Every file read, in the order first read; the first is the top-level file.
    pub files: Vec<PathBuf>,
    pub items: Vec<Item>,
    /// Includes that matched nothing: (file, line, message).
    pub notes: Vec<(usize, usize, String)>,
}

/// How deep includes may nest (a guard against symlink games the loop check cannot see).
const MAX_INCLUDE_DEPTH: usize = 32;

/// How many files one configuration may read, the same file counted each time it is
/// included: bounds the work of `include` lines that glob and brace-expand to the same files
/// over and over (fuzzing found 600 ms configurations of 1 KB). When fuzzing, 16: the same
/// check, reached sooner, so the fuzzer spends its time on the parser rather than on
/// re-reading the same two files.
const MAX_FILES_READ: usize = if cfg!(fuzzing) { 16 } else { 1024 };

/// Reads `text` (the contents of `name`) and, recursively, the files it includes.
pub(crate) fn lex(text: &str, name: &Path) -> Result<Lexed, ConfError> {
    let mut lx = Lexer {
        out: Lexed::default(),
        stack: Vec::new(),
    };
    lx.file(text, name)?;
    Ok(lx.out)
}

struct Lexer {
    out: Lexed,
    /// Canonical paths of the files being read, outermost first: an include of one of them is
    /// a loop.
    stack: Vec<PathBuf>,
}

impl Lexer {
    fn file(&mut self, text: &str, name: &Path) -> Result<(), ConfError> {
        let idx = self.out.files.len();
        self.out.files.push(name.to_path_buf());
        self.stack
            .push(std::fs::canonicalize(name).unwrap_or_else(|_| name.to_path_buf()));
        let err = |line: usize, msg: String| ConfError {
            file: name.to_path_buf(),
            line,
            msg,
        };
        for (n, raw_line) in text.lines().enumerate() {
            let line = n + 1;
            let clean = decomment(raw_line).map_err(|m| err(line, m))?;
            if clean.is_empty() {
                continue;
            }
            match clean.as_bytes()[0] {
                b'@' => {
                    return Err(err(
                        line,
                        "conditional configuration (`@ID …` lines) is not supported".into(),
                    ));
                }
                b'$' => {
                    return Err(err(
                        line,
                        "parameter definitions (`$NAME=…`) are not supported".into(),
                    ));
                }
                b'~' => {
                    return Err(err(
                        line,
                        "`~SEQ`/`~LST` replication is not supported".into(),
                    ));
                }
                _ => {}
            }
            if let Some(pattern) = include_pattern(&clean) {
                self.include(pattern, name, idx, line)?;
                continue;
            }
            self.cut(&clean, idx, line).map_err(|m| err(line, m))?;
        }
        self.stack.pop();
        Ok(())
    }

    /// Cuts a decommented line at its braces into tokens.
    fn cut(&mut self, mut rest: &str, file: usize, line: usize) -> Result<(), String> {
        loop {
            let at = find_brace(rest);
            let (stmt, brace) = match at {
                Some(i) => (&rest[..i], Some(rest.as_bytes()[i])),
                None => (rest, None),
            };
            let stmt = stmt.trim();
            if !stmt.is_empty() {
                self.out.items.push(Item {
                    tok: Tok::Words {
                        words: split_words(stmt)?,
                        raw: stmt.to_string(),
                    },
                    file,
                    line,
                });
            }
            let (Some(b), Some(i)) = (brace, at) else {
                return Ok(());
            };
            let tok = if b == b'{' { Tok::Open } else { Tok::Close };
            self.out.items.push(Item { tok, file, line });
            rest = &rest[i + 1..];
        }
    }

    fn include(
        &mut self,
        pattern: &str,
        from: &Path,
        from_idx: usize,
        line: usize,
    ) -> Result<(), ConfError> {
        let err = |msg: String| ConfError {
            file: from.to_path_buf(),
            line,
            msg,
        };
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "include {pattern}: includes nested more than {MAX_INCLUDE_DEPTH} deep"
            )));
        }
        let dir = from.parent().unwrap_or(Path::new(""));
        let mut files = Vec::new();
        let Some(alts) = expand_braces(pattern) else {
            return Err(err(format!(
                "include {pattern}: its braces expand to more than {MAX_BRACE_EXPANSION} patterns"
            )));
        };
        for alt in alts {
            let full = if Path::new(&alt).is_absolute() {
                PathBuf::from(&alt)
            } else {
                dir.join(&alt)
            };
            #[cfg(fuzzing)]
            let full = fuzz_rooted(full);
            if has_wildcard(&alt) {
                let found = glob(&full);
                if found.is_empty() {
                    self.out.notes.push((
                        from_idx,
                        line,
                        format!("include {alt}: no file matches"),
                    ));
                }
                files.extend(found);
            } else if full.is_file() {
                files.push(full);
            } else {
                return Err(err(format!(
                    "include {alt}: no such file ({})",
                    full.display()
                )));
            }
        }
        for f in files {
            if self.out.files.len() >= MAX_FILES_READ {
                return Err(err(format!(
                    "include {alt_all}: more than {MAX_FILES_READ} files read (the same file counts each time it is included)",
                    alt_all = pattern
                )));
            }
            let canon = std::fs::canonicalize(&f).unwrap_or_else(|_| f.clone());
            if self.stack.contains(&canon) {
                return Err(err(format!(
                    "include loop: {} is already being read",
                    f.display()
                )));
            }
            let text = std::fs::read_to_string(&f)
                .map_err(|e| err(format!("include {}: {e}", f.display())))?;
            self.file(&text, &f)?;
        }
        Ok(())
    }
}

/// keepalived's `decomment`: drops a comment (`!` or `#` outside `"…"`), unescapes `\!` and
/// `\#` outside quotes, trims whitespace. An unterminated quote is an error.
fn decomment(line: &str) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut quote = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' if !quote && matches!(chars.peek(), Some('!' | '#')) => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '!' | '#' if !quote => break,
            _ => out.push(c),
        }
    }
    if quote {
        return Err("unterminated quote".into());
    }
    Ok(out.trim().to_string())
}

/// The glob of an `include` line (`include`, and keepalived's stricter `includer`,
/// `includem`, `includew`, `includeb`, `includea`, all read alike here).
fn include_pattern(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("include")?;
    let rest = match rest.as_bytes().first() {
        Some(b' ' | b'\t') => rest,
        Some(b'r' | b'm' | b'w' | b'b' | b'a')
            if matches!(rest.as_bytes().get(1), Some(b' ' | b'\t')) =>
        {
            &rest[1..]
        }
        _ => return None,
    };
    let p = rest.trim();
    (!p.is_empty()).then_some(p)
}

/// Byte index of the first `{` or `}` outside `"…"`.
fn find_brace(s: &str) -> Option<usize> {
    let mut quote = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' => quote = !quote,
            b'{' | b'}' if !quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// keepalived's `alloc_strvec`: whitespace-separated words; `"…"` is one word without its
/// quotes, and a `"` inside a word ends the word.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(words);
        }
        if let Some(q) = rest.strip_prefix('"') {
            let end = q.find('"').ok_or("unterminated quote")?;
            words.push(q[..end].to_string());
            rest = &q[end + 1..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            words.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
}

/// Splits a script's command line as keepalived's `alloc_strvec_quoted_escaped` does: words
/// on whitespace, `"…"` and `'…'` quoting, and backslash escapes (`\n`, `\t`, `\xHH`, octal,
/// and `\c` for any other character `c`).
pub(crate) fn split_quoted_escaped(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let e = chars.next().ok_or("backslash at end of a script line")?;
                    match e {
                        'n' => word.push('\n'),
                        't' => word.push('\t'),
                        'r' => word.push('\r'),
                        'a' => word.push('\u{7}'),
                        'b' => word.push('\u{8}'),
                        'f' => word.push('\u{c}'),
                        'v' => word.push('\u{b}'),
                        'E' => word.push('\u{1b}'),
                        'x' if chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) => {
                            let mut v: u32 = 0;
                            while let Some(d) = chars.peek().and_then(|c| c.to_digit(16)) {
                                v = (v << 4 | d) & 0xff;
                                chars.next();
                            }
                            word.push(char::from(v as u8));
                        }
                        '0'..='7' => {
                            let mut v = e.to_digit(8).unwrap_or(0);
                            for _ in 0..2 {
                                match chars.peek().and_then(|c| c.to_digit(8)) {
                                    Some(d) => {
                                        v = (v << 3 | d) & 0xff;
                                        chars.next();
                                    }
                                    None => break,
                                }
                            }
                            word.push(char::from(v as u8));
                        }
                        other => word.push(other),
                    }
                }
                q @ ('"' | '\'') if quote.is_none() => quote = Some(q),
                q if quote == Some(q) => quote = None,
                w if w.is_whitespace() && quote.is_none() => break,
                other => word.push(other),
            }
        }
        if let Some(q) = quote {
            return Err(format!("missing terminating {q}"));
        }
        words.push(word);
    }
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Most patterns one `include` line's braces may expand to (glob(3) has no bound: a line of
/// nested or repeated braces would take the daemon's memory and time).
const MAX_BRACE_EXPANSION: usize = 256;

/// GLOB_BRACE: `a{b,c}d` → `abd`, `acd`, left to right, nested braces included; None beyond
/// [`MAX_BRACE_EXPANSION`] patterns.
fn expand_braces(p: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    expand_into(p, &mut out).then_some(out)
}

fn expand_into(p: &str, out: &mut Vec<String>) -> bool {
    let bytes = p.as_bytes();
    let Some(open) = p.find('{') else {
        out.push(p.to_string());
        return out.len() <= MAX_BRACE_EXPANSION;
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            b',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return out.len() <= MAX_BRACE_EXPANSION;
    };
    let (head, tail) = (&p[..open], &p[close + 1..]);
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    for w in bounds.windows(2) {
        let alt = &p[w[0] + 1..w[1]];
        if !expand_into(&format!("{head}{alt}{tail}"), out) {
            return false;
        }
    }
    true
}

/// Where absolute include paths resolve when fuzzing (`cargo fuzz` builds with
/// `--cfg fuzzing`): a small tree the fuzz target fills, not the machine's own, which a
/// generated `include /*/*/*` would walk for every input.
#[cfg(fuzzing)]
pub const FUZZ_ROOT: &str = "/tmp/xlvs-fuzz-root";

#[cfg(fuzzing)]
fn fuzz_rooted(p: PathBuf) -> PathBuf {
    use std::path::Component;
    // `..` is dropped, not followed: it would lead out of the tree (fuzzing found
    // `include /.././*/**/*/`, a walk of /tmp).
    let mut out = PathBuf::from(FUZZ_ROOT);
    for c in p.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

/// The regular files matching a glob (`*`, `?`, `[…]` in any component; a leading `.` is
/// matched only explicitly), sorted as glob(3) sorts them.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    let comps: Vec<_> = pattern.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let part = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if !has_wildcard(&part) {
                next.push(base.join(comp.as_os_str()));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| wild_match(part.as_bytes(), n.as_bytes()))
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        found = if last {
            next
        } else {
            next.into_iter().filter(|p| p.is_dir()).collect()
        };
    }
    found.into_iter().filter(|p| p.is_file()).collect()
}

/// fnmatch for one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!…]`/`[^…]`.
fn wild_match(p: &[u8], s: &[u8]) -> bool {
    // Iterative, with one backtrack point (the last `*`): O(len(p) × len(s)), where the
    // recursive form is exponential in the number of `*`s (a hostile include line).
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi + 1, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => match class(&p[pi..], s[si]) {
                    Some((true, len)) => {
                        pi += len;
                        si += 1;
                        continue;
                    }
                    Some((false, _)) => {}
                    // No closing `]`: a literal `[`.
                    None if s[si] == b'[' => {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                    None => {}
                },
                c if c == s[si] => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                _ => {}
            }
        }
        // A mismatch: the last `*` takes one more byte, or there is no match.
        let Some((sp, ss)) = star else {
            return false;
        };
        star = Some((sp, ss + 1));
        pi = sp;
        si = ss + 1;
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A `[…]` class at the start of `p` against `c`: whether it matches, and the class's length;
/// None if it is not closed (then `[` is a literal).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((hit != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_quotes_braces() {
        assert_eq!(decomment("  a b ! c").as_deref(), Ok("a b"));
        assert_eq!(decomment("a \"x # y\" # z").as_deref(), Ok("a \"x # y\""));
        assert_eq!(decomment("a \\#b").as_deref(), Ok("a #b"));
        assert!(decomment("a \"b").is_err());
        assert_eq!(
            split_words("a \"b c\" d"),
            Ok(vec!["a".into(), "b c".into(), "d".into()])
        );
        assert_eq!(find_brace("a \"{\" {"), Some(6));
        let lx = lex("x{y 1}\nz\n{\n}", Path::new("t.conf")).expect("lexes");
        let toks: Vec<_> = lx.items.iter().map(|i| (i.tok.clone(), i.line)).collect();
        let w = |s: &[&str], raw: &str| Tok::Words {
            words: s.iter().map(|s| s.to_string()).collect(),
            raw: raw.into(),
        };
        assert_eq!(
            toks,
            vec![
                (w(&["x"], "x"), 1),
                (Tok::Open, 1),
                (w(&["y", "1"], "y 1"), 1),
                (Tok::Close, 1),
                (w(&["z"], "z"), 2),
                (Tok::Open, 3),
                (Tok::Close, 4),
            ]
        );
    }

    #[test]
    fn script_words() {
        assert_eq!(
            split_quoted_escaped(r#"/bin/x 'a b' "c\"d" e\ f \x41"#),
            Ok(vec![
                "/bin/x".into(),
                "a b".into(),
                "c\"d".into(),
                "e f".into(),
                "A".into()
            ])
        );
        assert!(split_quoted_escaped("'a").is_err());
    }

    #[test]
    fn globs_and_braces() {
        assert_eq!(expand_braces("a{b,c}d").unwrap(), vec!["abd", "acd"]);
        assert_eq!(expand_braces("{x,y{1,2}}").unwrap(), vec!["x", "y1", "y2"]);
        assert!(wild_match(b"*.conf", b"a.conf"));
        assert!(!wild_match(b"*.conf", b"a.con"));
        assert!(wild_match(b"[a-c]?", b"bx"));
        assert!(!wild_match(b"[!a-c]?", b"bx"));
        assert_eq!(include_pattern("include  x/*.conf"), Some("x/*.conf"));
        assert_eq!(include_pattern("includem x"), Some("x"));
        assert_eq!(include_pattern("include_x y"), None);
    }

    /// Found by the keepalived_conf fuzz target (600 ms for 1 KB): include lines that read the
    /// same files over and over. At most 1024 file reads per configuration.
    #[test]
    fn a_configuration_reads_at_most_1024_files() {
        let dir = std::env::temp_dir().join(format!("xlvs-lexer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("x.conf"), "global_defs {\n}\n").unwrap();
        let top = dir.join("top.conf");
        let ok = "include x.conf\n".repeat(1023);
        assert_eq!(lex(&ok, &top).unwrap().files.len(), 1024);
        let e = lex(&(ok + "include x.conf\n"), &top).unwrap_err();
        assert!(e.msg.contains("more than 1024 files read"), "{}", e.msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Found by the keepalived_conf fuzz target (a 10 s timeout): an include line whose
    /// braces multiply and whose `*`s backtrack. Both are bounded now.
    #[test]
    fn hostile_include_patterns_are_bounded() {
        let many = "include x{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}\n";
        let e = lex(many, Path::new("/nonexistent/k.conf")).unwrap_err();
        assert!(e.msg.contains("expand to more than 256"), "{}", e.msg);
        let p = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let s = "a".repeat(200);
        let t = std::time::Instant::now();
        assert!(!wild_match(p.as_bytes(), s.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(wild_match(b"*.conf", b"a.conf"));
        assert!(wild_match(b"chk_[a-c]?*", b"chk_b12"));
        assert!(!wild_match(b"chk_[!a-c]*", b"chk_b12"));
        assert!(wild_match(b"x[", b"x["));
        let text = include_str!("../../tests/fuzz-regressions/keepalived_conf-timeout-5c6f8a0a");
        let t = std::time::Instant::now();
        let _ = lex(text, Path::new("/nonexistent/fuzz.conf"));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}
