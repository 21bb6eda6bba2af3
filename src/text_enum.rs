//! `text_enum!`: a closed set of names written as text (TOML settings, HDF5 attributes, Parquet
//! columns, command-line values). One declaration gives the enum its `as_str` / `FromStr` pair,
//! `Display`, `ALL` and serde, so the text of each variant is written in exactly one place.

/// Declares `enum Name("what it is") { Variant = "text", ... }`. Parsing an unknown text fails
/// with a message naming what was expected (`unknown clip status "x" (ok | missing | ...)`).
/// The derived `Ord` is the declaration order.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The variant's text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " {:?} ({})"), other, [$($text),+].join(" | "))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    text_enum! {
        /// A test set.
        enum Colour("colour") {
            Red = "red",
            DarkBlue = "dark-blue",
        }
    }

    #[test]
    fn text_round_trips_and_unknown_names_the_choices() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>().unwrap(), *c);
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!("dark-blue".parse::<Colour>(), Ok(Colour::DarkBlue));
        assert_eq!("green".parse::<Colour>().unwrap_err(), "unknown colour \"green\" (red | dark-blue)");
    }

    #[test]
    fn serde_uses_the_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Holder {
            c: Colour,
        }
        let s = toml::to_string(&Holder { c: Colour::DarkBlue }).unwrap();
        assert_eq!(s.trim(), "c = \"dark-blue\"");
        assert_eq!(toml::from_str::<Holder>(&s).unwrap(), Holder { c: Colour::DarkBlue });
        let e = toml::from_str::<Holder>("c = \"green\"").unwrap_err().to_string();
        assert!(e.contains("unknown colour \"green\" (red | dark-blue)"), "{e}");
    }
}
