//! Command-line flags the way spf13/pflag (used by kubeadm, kubelet and kubectl) reads them: `--name=value`,
//! `--name value`, `-n value`/`-n=value`, booleans as `--flag` or `--flag=false`, string slices split on
//! commas and repeatable, positional arguments anywhere, `--` ends the flags. Unknown flags are refused
//! with pflag's wording (`unknown flag: --x`).

use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Str,
    /// A string slice (`StringSliceVar`): comma-separated, repeatable.
    List,
    Int,
}

#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
}

pub const fn flag(name: &'static str, kind: Kind) -> Spec {
    Spec { name, short: None, kind }
}

pub const fn short(name: &'static str, c: char, kind: Kind) -> Spec {
    Spec { name, short: Some(c), kind }
}

/// What was set, by flag name (values in command-line order), and the positional arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    pub set: BTreeMap<String, Vec<String>>,
    pub args: Vec<String>,
}

impl Parsed {
    pub fn has(&self, name: &str) -> bool {
        self.set.contains_key(name)
    }

    /// The last value given.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.set.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn bool(&self, name: &str) -> bool {
        self.str(name).is_some_and(|v| v == "true")
    }

    /// Every value of a string slice, split on commas.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.set
            .get(name)
            .map(|vs| vs.iter().flat_map(|v| v.split(',')).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The names set, in pflag's `Visit` order (lexicographical).
    pub fn names(&self) -> Vec<&str> {
        self.set.keys().map(String::as_str).collect()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    // Go's strconv.ParseBool
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parse `argv` (without the program and subcommand names) against `specs`.
pub fn parse(argv: &[String], specs: &[Spec]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    let put = |out: &mut Parsed, spec: &Spec, value: String, shown: &str| -> Result<(), String> {
        let value = match spec.kind {
            Kind::Bool => match parse_bool(&value) {
                Some(b) => b.to_string(),
                None => {
                    return Err(format!(
                        "invalid argument \"{value}\" for \"{shown}\" flag: strconv.ParseBool: parsing \"{value}\": invalid syntax"
                    ))
                }
            },
            Kind::Int => {
                if value.parse::<i64>().is_err() {
                    return Err(format!(
                        "invalid argument \"{value}\" for \"{shown}\" flag: strconv.ParseInt: parsing \"{value}\": invalid syntax"
                    ));
                }
                value
            }
            _ => value,
        };
        out.set.entry(spec.name.to_string()).or_default().push(value);
        Ok(())
    };
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if a == "--" {
            out.args.extend(argv[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| format!("unknown flag: --{name}"))?;
            let shown = format!("--{name}");
            let value = match (inline, spec.kind) {
                (Some(v), _) => v,
                (None, Kind::Bool) => "true".into(),
                (None, _) => {
                    let v = argv.get(i).ok_or_else(|| format!("flag needs an argument: --{name}"))?;
                    i += 1;
                    v.clone()
                }
            };
            put(&mut out, spec, value, &shown)?;
        } else if a.len() > 1 && a.starts_with('-') {
            let body = &a[1..];
            let c = body.chars().next().expect("non-empty");
            let spec = specs
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| format!("unknown shorthand flag: '{c}' in {a}"))?;
            let rest = &body[c.len_utf8()..];
            let shown = format!("-{c}, --{}", spec.name);
            let value = if let Some(v) = rest.strip_prefix('=') {
                v.to_string()
            } else if !rest.is_empty() {
                if spec.kind == Kind::Bool {
                    return Err(format!("unknown shorthand flag: '{}' in {a}", &rest[..1]));
                }
                rest.to_string()
            } else if spec.kind == Kind::Bool {
                "true".into()
            } else {
                let v = argv.get(i).ok_or_else(|| format!("flag needs an argument: '{c}' in -{c}"))?;
                i += 1;
                v.clone()
            };
            put(&mut out, spec, value, &shown)?;
        } else {
            out.args.push(a.clone());
        }
    }
    Ok(out)
}

