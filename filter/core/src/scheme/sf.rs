//! RFC 8941 dictionaries parsed strictly: a key repeated at any level (a
//! dictionary member, or a parameter of an item or an inner list) is an
//! error instead of RFC 8941's "the last one wins".
//!
//! The last-wins rule is right for a generic parser and wrong for a
//! signature: with `…;created=1;…;created=2` the edge would check one
//! value while an application that re-parses the header first-wins would
//! see the other (issue 23). The `sfv` crate's visitor API lets us see every
//! key as it is parsed, in one pass; the result is the same
//! [`sfv::Dictionary`] its plain parser builds.

use std::cell::Cell;
use std::fmt;

use sfv::visitor::{
    DictionaryVisitor, EntryVisitor, InnerListVisitor, ItemVisitor, ParameterVisitor,
};
use sfv::{BareItemFromInput, Dictionary, InnerList, Item, KeyRef, ListEntry, Parameters, Parser};

/// Why [`parse_dictionary`] refused a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SfError {
    /// Not an RFC 8941 dictionary.
    Syntax,
    /// A dictionary key, or a parameter key within one item or inner list,
    /// occurs more than once.
    RepeatedKey,
}

/// Parses `raw` as an RFC 8941 dictionary, refusing repeated keys.
pub fn parse_dictionary(raw: &[u8]) -> Result<Dictionary, SfError> {
    let repeated = Cell::new(false);
    let visitor = Dict {
        dict: Dictionary::new(),
        repeated: &repeated,
    };
    Parser::new(raw)
        .with_version(sfv::Version::Rfc8941)
        .parse_dictionary_with_visitor(visitor)
        .map_err(|_| {
            if repeated.get() {
                SfError::RepeatedKey
            } else {
                SfError::Syntax
            }
        })
}

/// The visitors' error: a key seen twice (recorded in the shared flag too,
/// since `sfv` wraps visitor errors).
#[derive(Debug)]
struct Repeated;

impl fmt::Display for Repeated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("repeated key")
    }
}

impl std::error::Error for Repeated {}

fn repeated(flag: &Cell<bool>) -> Repeated {
    flag.set(true);
    Repeated
}

struct Dict<'f> {
    dict: Dictionary,
    repeated: &'f Cell<bool>,
}

impl<'de, 'f> DictionaryVisitor<'de> for Dict<'f> {
    type Out = Dictionary;
    type Error = Repeated;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        if self.dict.contains_key(key) {
            return Err(repeated(self.repeated));
        }
        Ok(Entry {
            dict: &mut self.dict,
            key,
            repeated: self.repeated,
        })
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(self.dict)
    }
}

struct Entry<'de, 'a, 'f> {
    dict: &'a mut Dictionary,
    key: &'de KeyRef,
    repeated: &'f Cell<bool>,
}

impl<'de> EntryVisitor<'de> for Entry<'de, '_, '_> {
    type Error = Repeated;

    fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        Ok(self)
    }

    fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
        let entry = self
            .dict
            .entry(self.key.to_owned())
            .or_insert_with(|| ListEntry::InnerList(InnerList::default()));
        Ok(List {
            list: entry,
            repeated: self.repeated,
        })
    }
}

impl<'de> ItemVisitor<'de> for Entry<'de, '_, '_> {
    type Out = ();
    type Error = Repeated;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        let entry = self
            .dict
            .entry(self.key.to_owned())
            .or_insert_with(|| ListEntry::Item(Item::new(bare_item)));
        Ok(Params {
            params: match entry {
                ListEntry::Item(item) => Some(&mut item.params),
                ListEntry::InnerList(_) => None,
            },
            repeated: self.repeated,
        })
    }
}

struct List<'a, 'f> {
    list: &'a mut ListEntry,
    repeated: &'f Cell<bool>,
}

impl<'de> InnerListVisitor<'de> for List<'_, '_> {
    type Error = Repeated;

    fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
        let items = match self.list {
            ListEntry::InnerList(list) => Some(&mut list.items),
            ListEntry::Item(_) => None,
        };
        Ok(ListItem {
            items,
            repeated: self.repeated,
        })
    }

    fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
        Ok(Params {
            params: match self.list {
                ListEntry::InnerList(list) => Some(&mut list.params),
                ListEntry::Item(_) => None,
            },
            repeated: self.repeated,
        })
    }
}

struct ListItem<'a, 'f> {
    items: Option<&'a mut Vec<Item>>,
    repeated: &'f Cell<bool>,
}

impl<'de> ItemVisitor<'de> for ListItem<'_, '_> {
    type Out = ();
    type Error = Repeated;

    fn bare_item(
        self,
        bare_item: BareItemFromInput<'de>,
    ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
        let params = match self.items {
            Some(items) => {
                items.push(Item::new(bare_item));
                items.last_mut().map(|item| &mut item.params)
            }
            None => None,
        };
        Ok(Params {
            params,
            repeated: self.repeated,
        })
    }
}

struct Params<'a, 'f> {
    params: Option<&'a mut Parameters>,
    repeated: &'f Cell<bool>,
}

impl<'de> ParameterVisitor<'de> for Params<'_, '_> {
    type Out = ();
    type Error = Repeated;

    fn parameter(
        &mut self,
        key: &'de KeyRef,
        value: BareItemFromInput<'de>,
    ) -> Result<(), Self::Error> {
        if let Some(params) = self.params.as_deref_mut() {
            if params.contains_key(key) {
                return Err(repeated(self.repeated));
            }
            params.insert(key.to_owned(), value.into());
        }
        Ok(())
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strict parser builds what sfv's own parser builds, and refuses
    /// every kind of repeated key that sfv would silently merge.
    #[test]
    fn strict_dictionaries() {
        for ok in [
            r#"sig1=("@method" "@path");created=1;keyid="k";tag="dev""#,
            "sig1=:AAAA:",
            "a=1;x;y=2, b=(1 2);p=3, c",
            "sha-256=:AAAA:, sha-512=:BBBB:",
        ] {
            let strict = parse_dictionary(ok.as_bytes()).unwrap();
            let plain: Dictionary = Parser::new(ok)
                .with_version(sfv::Version::Rfc8941)
                .parse()
                .unwrap();
            assert_eq!(strict, plain, "{ok}");
        }
        for repeated in [
            r#"sig1=("@method");created=1;created=2"#,
            r#"sig1=("@method");nonce="aaaaaaaaaaaaaaaa";keyid="k";nonce="bbbbbbbbbbbbbbbb""#,
            r#"sig1=("@method"), sig1=("@path")"#,
            "sig1=:AAAA:, sig1=:BBBB:",
            r#"sig1=("@method";x;x)"#,
            "a=1;p=1;p=2",
            "sha-256=:AAAA:, sha-256=:BBBB:",
        ] {
            assert_eq!(
                parse_dictionary(repeated.as_bytes()),
                Err(SfError::RepeatedKey),
                "{repeated}"
            );
        }
        for bad in ["sig1=(", "=1", "a=1,", "a=\"\\x\""] {
            assert_eq!(
                parse_dictionary(bad.as_bytes()),
                Err(SfError::Syntax),
                "{bad}"
            );
        }
    }
}
