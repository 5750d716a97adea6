//! The wire formats and the set a verifier accepts (the `formats` option).

use core::fmt;

/// A wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `CRAWBL-HMAC-SHA256-V1`.
    V1,
    /// The RFC 9421 `hmac-sha256` profile.
    Rfc9421,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 2] = [Format::V1, Format::Rfc9421];

    /// Its name in configuration and on the command line: `v1`, `rfc9421`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::V1 => "v1",
            Format::Rfc9421 => "rfc9421",
        }
    }

    /// The format called `name`.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of wire formats a verifier accepts (the plugin option `formats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// Accept `CRAWBL-HMAC-SHA256-V1`.
    pub v1: bool,
    /// Accept the RFC 9421 profile.
    pub rfc9421: bool,
}

impl Default for Formats {
    /// v1 only.
    fn default() -> Self {
        Formats {
            v1: true,
            rfc9421: false,
        }
    }
}

impl Formats {
    /// Both formats.
    pub const BOTH: Formats = Formats {
        v1: true,
        rfc9421: true,
    };

    /// True when `format` is accepted.
    pub fn contains(self, format: Format) -> bool {
        match format {
            Format::V1 => self.v1,
            Format::Rfc9421 => self.rfc9421,
        }
    }

    /// The set of `formats`.
    pub fn of(formats: impl IntoIterator<Item = Format>) -> Formats {
        let mut out = Formats {
            v1: false,
            rfc9421: false,
        };
        for f in formats {
            match f {
                Format::V1 => out.v1 = true,
                Format::Rfc9421 => out.rfc9421 = true,
            }
        }
        out
    }

    /// The names of the formats accepted, in [`Format::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        Format::ALL
            .into_iter()
            .filter(|&f| self.contains(f))
            .map(Format::name)
            .collect()
    }
}
