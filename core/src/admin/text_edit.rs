//! Formatting-preserving edits of JSON text: the spans of the objects and members a kill
//! touches, found without recursion, and replacements applied at once.

use serde_json::Value;

use super::{KillChange, Target};
use crate::time::format_timestamp;

/// One `"key": value` of an object, as byte offsets into the text.
#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    key_end: usize,
    value_start: usize,
    value_end: usize,
}

/// An object: the offsets of its braces and its members in order.
#[derive(Debug)]
struct Object {
    open: usize,
    close: usize,
    members: Vec<Member>,
}

impl Object {
    /// The member a JSON parser keeps (the last of duplicates).
    fn member(&self, key: &str) -> Option<usize> {
        self.members.iter().rposition(|m| m.key == key)
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i`, without recursion.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

fn object_at(text: &str, open: usize) -> Option<Object> {
    let b = text.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut j = skip_ws(b, open + 1);
    if b.get(j) == Some(&b'}') {
        return Some(Object {
            open,
            close: j,
            members,
        });
    }
    loop {
        let key_start = j;
        let key_end = string_end(b, j)?;
        let key: String = serde_json::from_str(text.get(key_start..key_end)?).ok()?;
        j = skip_ws(b, key_end);
        if b.get(j) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(b, j + 1);
        let value_end = value_end(b, value_start)?;
        members.push(Member {
            key,
            key_start,
            key_end,
            value_start,
            value_end,
        });
        j = skip_ws(b, value_end);
        match b.get(j)? {
            b',' => j = skip_ws(b, j + 1),
            b'}' => {
                return Some(Object {
                    open,
                    close: j,
                    members,
                })
            }
            _ => return None,
        }
    }
}

/// Replacements of byte ranges, applied at once.
struct Edits<'t> {
    text: &'t str,
    newline: &'static str,
    list: Vec<(usize, usize, String)>,
}

impl<'t> Edits<'t> {
    fn replace(&mut self, start: usize, end: usize, with: String) {
        self.list.push((start, end, with));
    }

    /// `"key": value`, with the object's own spacing around the colon.
    fn member_text(&self, object: &Object, key: &str, value: &str) -> String {
        let colon = object
            .members
            .first()
            .and_then(|m| self.text.get(m.key_end..m.value_start))
            .filter(|s| !s.contains('\n'))
            .unwrap_or(": ");
        format!("{}{colon}{value}", json_string(key))
    }

    /// The whitespace that starts the line holding offset `at`.
    fn indent_of(&self, at: usize) -> &'t str {
        let line_start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = &self.text[line_start..at];
        let width = line.len() - line.trim_start_matches([' ', '\t']).len();
        &line[..width]
    }

    /// Adds members to an object where they disturb the fewest lines: at the end of a
    /// one-line object; in a multi-line one, each on a line of its own after the `active`
    /// member (or the first member followed by a comma), so no existing line changes.
    fn insert(&mut self, object: &Object, new: &[(&str, String)]) -> Option<()> {
        if new.is_empty() {
            return Some(());
        }
        let rendered: Vec<String> = new
            .iter()
            .map(|(key, value)| self.member_text(object, key, value))
            .collect();
        let Some(last) = object.members.last() else {
            self.replace(
                object.open,
                object.close + 1,
                format!("{{ {} }}", rendered.join(", ")),
            );
            return Some(());
        };
        let multiline = self.text[object.open..object.close].contains('\n');
        if !multiline {
            let separator = match object.members.get(1) {
                Some(second) => &self.text[object.members[0].value_end..second.key_start],
                None if self.text[object.open..object.close].contains(' ') => ", ",
                None => ",",
            };
            let mut added = String::new();
            for member in &rendered {
                added.push_str(separator);
                added.push_str(member);
            }
            self.replace(last.value_end, last.value_end, added);
            return Some(());
        }
        let not_last = object.members.len() - 1;
        let anchor = object.members[..not_last]
            .iter()
            .position(|m| m.key == "active")
            .or((not_last > 0).then_some(0));
        let (at, indent) = match anchor {
            Some(i) => {
                let comma = skip_ws(self.text.as_bytes(), object.members[i].value_end);
                if self.text.as_bytes().get(comma) != Some(&b',') {
                    return None;
                }
                (comma + 1, self.indent_of(object.members[i + 1].key_start))
            }
            None => (object.open + 1, self.indent_of(last.key_start)),
        };
        let mut added = String::new();
        for member in &rendered {
            added.push_str(self.newline);
            added.push_str(indent);
            added.push_str(member);
            added.push(',');
        }
        self.replace(at, at, added);
        Some(())
    }

    /// Removes member `index`, with the comma that separated it.
    fn remove(&mut self, object: &Object, index: usize) {
        let members = &object.members;
        let member = &members[index];
        if let Some(next) = members.get(index + 1) {
            self.replace(member.key_start, next.key_start, String::new());
        } else if let Some(previous) = index.checked_sub(1).map(|i| &members[i]) {
            self.replace(previous.value_end, member.value_end, String::new());
        } else {
            self.replace(member.key_start, member.value_end, String::new());
        }
    }

    fn apply(mut self) -> Option<String> {
        self.list.sort_by_key(|&(start, end, _)| (start, end));
        let mut out = String::with_capacity(self.text.len() + 256);
        let mut copied = 0;
        for (start, end, with) in &self.list {
            if *start < copied {
                return None; // overlapping edits: let the caller fall back
            }
            out.push_str(self.text.get(copied..*start)?);
            out.push_str(with);
            copied = *end;
        }
        out.push_str(self.text.get(copied..)?);
        Some(out)
    }
}

fn json_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// The kill applied to the text, or `None` when the text has a shape this editor does not
/// handle (the caller then re-serializes).
pub(super) fn kill_in_place(
    text: &str,
    change: &KillChange<'_>,
    new_revision: &str,
) -> Option<String> {
    let start = text.strip_prefix('\u{feff}').map_or(0, |_| 3);
    let root = object_at(text, skip_ws(text.as_bytes(), start))?;
    let mut edits = Edits {
        text,
        newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
        list: Vec::new(),
    };
    let holder = match change.target {
        Target::All => None,
        Target::Flag(key) => {
            let flags = &root.members[root.member("flags")?];
            let flags = object_at(text, flags.value_start)?;
            let flag = &flags.members[flags.member(key)?];
            Some(object_at(text, flag.value_start)?)
        }
    };
    let holder_object = holder.as_ref().unwrap_or(&root);
    let fields: [(&str, Option<String>); 4] = [
        ("active", Some(change.active.to_string())),
        ("reason", change.reason.map(json_string)),
        ("actor", Some(json_string(change.actor))),
        ("at", Some(json_string(&format_timestamp(change.at)))),
    ];
    let mut root_inserts: Vec<(&str, String)> = Vec::new();
    match holder_object.member("kill") {
        Some(index) => {
            let switch = object_at(text, holder_object.members[index].value_start)?;
            let mut inserts: Vec<(&str, String)> = Vec::new();
            let mut removal = None;
            for (key, value) in fields {
                match (switch.member(key), value) {
                    (Some(i), Some(value)) => {
                        let m = &switch.members[i];
                        edits.replace(m.value_start, m.value_end, value);
                    }
                    (None, Some(value)) => inserts.push((key, value)),
                    (Some(i), None) => removal = Some(i),
                    (None, None) => {}
                }
            }
            if let Some(i) = removal {
                if inserts.is_empty() {
                    edits.remove(&switch, i);
                } else {
                    // Reuse the removed member's place: no comma moves.
                    let (key, value) = inserts.remove(0);
                    let m = &switch.members[i];
                    let member = edits.member_text(&switch, key, &value);
                    edits.replace(m.key_start, m.value_end, member);
                }
            }
            edits.insert(&switch, &inserts)?;
        }
        None => {
            let colon = holder_object
                .members
                .first()
                .and_then(|m| text.get(m.key_end..m.value_start))
                .filter(|s| !s.contains('\n'))
                .unwrap_or(": ");
            let inner: Vec<String> = fields
                .iter()
                .filter_map(|(key, value)| {
                    value
                        .as_ref()
                        .map(|v| format!("{}{colon}{v}", json_string(key)))
                })
                .collect();
            let switch = format!("{{ {} }}", inner.join(", "));
            match &holder {
                Some(flag) => edits.insert(flag, &[("kill", switch)])?,
                None => root_inserts.push(("kill", switch)),
            }
        }
    }
    match root.member("revision") {
        Some(i) => {
            let m = &root.members[i];
            edits.replace(m.value_start, m.value_end, json_string(new_revision));
        }
        None => root_inserts.push(("revision", json_string(new_revision))),
    }
    edits.insert(&root, &root_inserts)?;
    edits.apply()
}

/// Offsets of the elements of the array that opens at `open`.
fn array_items(text: &str, open: usize) -> Option<Vec<usize>> {
    let b = text.as_bytes();
    if b.get(open) != Some(&b'[') {
        return None;
    }
    let mut items = Vec::new();
    let mut j = skip_ws(b, open + 1);
    if b.get(j) == Some(&b']') {
        return Some(items);
    }
    loop {
        items.push(j);
        j = skip_ws(b, value_end(b, j)?);
        match b.get(j)? {
            b',' => j = skip_ws(b, j + 1),
            b']' => return Some(items),
            _ => return None,
        }
    }
}

/// Sets members of the `ramp` of rule `rule_index` of flag `flag` (values are JSON text) and
/// the revision, keeping the rest of the text as it is; `None` when the text has a shape this
/// editor does not handle (the caller then re-serializes).
pub(super) fn ramp_in_place(
    text: &str,
    flag: &str,
    rule_index: usize,
    fields: &[(&str, String)],
    new_revision: &str,
) -> Option<String> {
    let start = text.strip_prefix('\u{feff}').map_or(0, |_| 3);
    let root = object_at(text, skip_ws(text.as_bytes(), start))?;
    let mut edits = Edits {
        text,
        newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
        list: Vec::new(),
    };
    let flags = object_at(text, root.members[root.member("flags")?].value_start)?;
    let flag = object_at(text, flags.members[flags.member(flag)?].value_start)?;
    let rules = array_items(text, flag.members[flag.member("rules")?].value_start)?;
    let rule = object_at(text, *rules.get(rule_index)?)?;
    let ramp = object_at(text, rule.members[rule.member("ramp")?].value_start)?;
    let mut inserts: Vec<(&str, String)> = Vec::new();
    for (key, value) in fields {
        match ramp.member(key) {
            Some(i) => {
                let m = &ramp.members[i];
                edits.replace(m.value_start, m.value_end, value.clone());
            }
            None => inserts.push((key, value.clone())),
        }
    }
    edits.insert(&ramp, &inserts)?;
    match root.member("revision") {
        Some(i) => {
            let m = &root.members[i];
            edits.replace(m.value_start, m.value_end, json_string(new_revision));
        }
        None => edits.insert(&root, &[("revision", json_string(new_revision))])?,
    }
    edits.apply()
}
