//! Values that a user may write in a short or a long form.
//!
//! Where the long form is a table, deserialization goes through a visitor so that a typo
//! inside the table is still reported as an unknown key (an untagged enum would hide it).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A string, or a list of strings (`"sh -c x"` or `["sh", "-c", "x"]`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

impl Default for StringOrList {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

/// One path or several (`env_file`).
pub type OneOrMany = StringOrList;

/// A scalar used as an environment value, build arg or sysctl.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged, expecting = "a string, number or boolean")]
pub enum EnvValue {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => f.write_str(s),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A size in bytes, or a string with a unit (`"256m"`, `"1g"`, `"512k"`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(
    untagged,
    expecting = "a size such as \"256m\" or \"1g\", or a number of bytes"
)]
pub enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A signal: a name (`"SIGINT"`, `"INT"`) or a number.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(
    untagged,
    expecting = "a signal such as \"SIGINT\" or \"TERM\", or a signal number"
)]
pub enum SignalValue {
    Number(i64),
    Name(String),
}

/// `expect_exit`: a number, or `"zero" | "nonzero" | "denied"`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(
    untagged,
    expecting = "an exit code number, or one of \"zero\", \"nonzero\", \"denied\""
)]
pub enum ExpectExit {
    Code(i64),
    Word(String),
}

/// `depends_on = ["db"]` or `depends_on = { db = "healthy" }`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(
    untagged,
    expecting = "a list of service names, or a table of service = \"started\" | \"healthy\" | \"completed\""
)]
pub enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

/// A port: `"7777"`, `"8080:80"`, `"127.0.0.1:8080:80/udp"`, `8080`, or a table.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum PortSpec {
    Short(String),
    Number(i64),
    Long(PortLong),
}

/// The long form of a port.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortLong {
    /// Host port; default: the container port.
    pub host: Option<i64>,
    /// Port inside the container.
    pub container: i64,
    /// Host address; default `127.0.0.1`.
    pub host_ip: Option<String>,
    /// `tcp` (default) or `udp`.
    pub protocol: Option<String>,
}

/// A volume: `"SRC:DST[:ro]"` or a table.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum VolumeSpec {
    Short(String),
    Long(VolumeLong),
}

/// The long form of a volume.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeLong {
    /// A path (starting with `.` or `/`) for a bind mount, or a key of `[volumes]`.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
    /// Allow a bind source outside the project directory (reported by `devbox audit`).
    #[serde(default)]
    pub allow_outside: bool,
}

/// A ulimit: `1024` (soft = hard) or `{ soft, hard }`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Ulimit {
    Single(i64),
    Pair(UlimitPair),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UlimitPair {
    pub soft: i64,
    pub hard: i64,
}

/// A worker's network policy: `"none"`, `"host"`, or a table.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum NetPolicy {
    Mode(String),
    Rules(NetRules),
}

/// `net = { default = "deny", allow = ["api.example.com:443"], warn = [], deny = [] }`
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetRules {
    /// `deny` (default), `allow` or `warn`: what happens to a destination no list names.
    pub default: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub warn: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Implements `Deserialize` for an enum whose variants are a string, optionally a
/// number, and a table (deserialized with its own unknown-key checks).
macro_rules! short_or_table {
    ($ty:ident, $expecting:literal, str => $s:ident, $(int => $i:ident,)? table => $t:ident($tt:ty)) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        short_or_table!(@str $ty, $s, v)
                    }
                    $(
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$ty, E> {
                        Ok($ty::$i(v))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$ty, E> {
                        i64::try_from(v)
                            .map($ty::$i)
                            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
                    }
                    )?
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<$ty, A::Error> {
                        <$tt>::deserialize(de::value::MapAccessDeserializer::new(map)).map($ty::$t)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
    (@str $ty:ident, $s:ident, $v:ident) => {
        Ok($ty::$s($v.to_owned()))
    };
}

short_or_table!(PortSpec,
    "a port such as \"8080\", \"8080:80\", \"127.0.0.1:8080:80\", or a table { host, container, host_ip, protocol }",
    str => Short, int => Number, table => Long(PortLong));
short_or_table!(VolumeSpec,
    "a volume such as \"./src:/app:ro\" or \"cache:/cache\", or a table { source, target, read_only }",
    str => Short, table => Long(VolumeLong));
short_or_table!(NetPolicy,
    "\"none\", \"host\", or a table { default, allow, warn, deny }",
    str => Mode, table => Rules(NetRules));

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a table { soft, hard }")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit::Single(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                i64::try_from(v)
                    .map(Ulimit::Single)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                UlimitPair::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Ulimit::Pair)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a healthcheck runs (`cmd`): a shell string or an argv list.
pub type HealthTest = StringOrList;
