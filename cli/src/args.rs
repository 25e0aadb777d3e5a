//! A small command-line reader: one positional command, positionals, `--name value` options and
//! `--name` switches. Unknown or repeated arguments are errors, never ignored.

use crate::Failure;

pub struct Args {
    items: Vec<Option<String>>,
    command: Option<String>,
}

impl Args {
    /// The process arguments. Every argument must be UTF-8 text: one that is not is a usage
    /// error naming it (its bytes escaped), never a panic.
    pub fn from_env() -> Result<Args, Failure> {
        let mut items: Vec<Option<String>> = Vec::new();
        for (position, arg) in std::env::args_os().skip(1).enumerate() {
            match arg.into_string() {
                Ok(text) => items.push(Some(text)),
                Err(raw) => {
                    return Err(Failure::usage(format!(
                        "argument {} \"{}\" is not valid UTF-8: flagrail takes text arguments only",
                        position + 1,
                        raw.as_encoded_bytes().escape_ascii()
                    )))
                }
            }
        }
        let command = if items.is_empty() {
            None
        } else {
            items.remove(0)
        };
        Ok(Args { items, command })
    }

    pub fn command(&self) -> Option<String> {
        self.command.clone()
    }

    /// The next argument that is not an option.
    pub fn positional(&mut self, name: &str) -> Result<String, Failure> {
        let mut skip_value = false;
        for slot in &mut self.items {
            let Some(item) = slot.as_deref() else {
                continue;
            };
            if skip_value {
                skip_value = false;
                continue;
            }
            if item.starts_with("--") {
                skip_value = !item.contains('=');
                continue;
            }
            return Ok(slot.take().unwrap_or_default());
        }
        Err(Failure::usage(format!("missing {name}")))
    }

    /// The next argument that is not an option, if there is one.
    pub fn next_positional(&mut self) -> Option<String> {
        self.positional("").ok()
    }

    /// `--name value` or `--name=value`.
    pub fn option(&mut self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        for i in 0..self.items.len() {
            let Some(item) = self.items[i].as_deref() else {
                continue;
            };
            if let Some(value) = item.strip_prefix(&prefix) {
                let value = value.to_string();
                self.items[i] = None;
                return Some(value);
            }
            if item == name {
                self.items[i] = None;
                return self.items.get_mut(i + 1).and_then(Option::take);
            }
        }
        None
    }

    /// Every value of a repeatable option: `--name a b --name c` (values run to the next
    /// `--option`).
    pub fn values(&mut self, name: &str) -> Vec<String> {
        let mut values = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            if self.items[i].as_deref() == Some(name) {
                self.items[i] = None;
                i += 1;
                while let Some(slot) = self.items.get_mut(i) {
                    match slot.as_deref() {
                        Some(value) if !value.starts_with("--") => {
                            values.extend(slot.take());
                            i += 1;
                        }
                        _ => break,
                    }
                }
                continue;
            }
            if let Some(value) = self.items[i]
                .as_deref()
                .and_then(|item| item.strip_prefix(name))
                .and_then(|rest| rest.strip_prefix('='))
            {
                values.push(value.to_string());
                self.items[i] = None;
            }
            i += 1;
        }
        values
    }

    pub fn required(&mut self, name: &str) -> Result<String, Failure> {
        self.option(name)
            .ok_or_else(|| Failure::usage(format!("missing {name}")))
    }

    /// A switch without a value.
    pub fn flag(&mut self, name: &str) -> bool {
        match self.items.iter().position(|i| i.as_deref() == Some(name)) {
            Some(i) => {
                self.items[i] = None;
                true
            }
            None => false,
        }
    }

    /// Fails on anything not consumed.
    pub fn finish(&mut self) -> Result<(), Failure> {
        let leftover: Vec<&str> = self.items.iter().flatten().map(String::as_str).collect();
        if leftover.is_empty() {
            Ok(())
        } else {
            Err(Failure::usage(format!(
                "unexpected argument(s): {}",
                leftover.join(" ")
            )))
        }
    }
}
