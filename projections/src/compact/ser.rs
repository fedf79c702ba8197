//! Encoding a serializable value straight into the compact form, without building its JSON
//! tree first: what [`super::encode`] writes for `serde_json::to_value(value)`, field for
//! field (objects' entries in the order they are serialized rather than sorted, which reads
//! back as the same document). The graph view renders its vertices this way: building and
//! dropping a `Value` per vertex cost more than writing it.

use serde::ser::{self, Serialize};

use super::{
    ARRAY, FALSE, FLOAT, FORMAT, NULL, OBJECT, TRUE, UINT, put_int, put_key, put_string, put_varint,
};

/// The name under which `serde_json::value::RawValue` serializes itself (a struct of one
/// field holding the JSON text): its text is written as the JSON it holds.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Encodes `value` as [`super::encode`] encodes its JSON tree. Fails where
/// `serde_json::to_value` would: a map key that is not a string, a number or a bool, or a
/// `Serialize` implementation that fails.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> crate::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.push(FORMAT);
    value
        .serialize(Encoder { out: &mut out })
        .map_err(|e| crate::Error::Render(e.0))?;
    Ok(out)
}

/// Why a value could not be encoded.
#[derive(Debug)]
pub struct EncodeError(String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

impl ser::Error for EncodeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, EncodeError>;

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

/// An array or object being written: its count is patched in at the end (one byte reserved,
/// widened when the count needs more).
struct Container<'a> {
    out: &'a mut Vec<u8>,
    count_at: usize,
    count: u64,
    /// A `RawValue`: its one field is JSON text, written as the value it holds.
    raw: bool,
}

impl<'a> Container<'a> {
    fn open(out: &'a mut Vec<u8>, tag: u8) -> Self {
        out.push(tag);
        let count_at = out.len();
        out.push(0);
        Self {
            out,
            count_at,
            count: 0,
            raw: false,
        }
    }

    fn close(self) -> Result<()> {
        if self.raw {
            return Ok(());
        }
        let mut count = Vec::with_capacity(10);
        put_varint(&mut count, self.count);
        self.out.splice(self.count_at..self.count_at + 1, count);
        Ok(())
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.count += 1;
        value.serialize(Encoder { out: self.out })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        if self.raw {
            return raw_json(self.out, value);
        }
        self.count += 1;
        put_key(self.out, key);
        value.serialize(Encoder { out: self.out })
    }
}

/// A `RawValue`'s text, written as the JSON value it holds.
fn raw_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, text: &T) -> Result<()> {
    let text = serde_json::to_value(text).map_err(|e| EncodeError(e.to_string()))?;
    let json = text
        .as_str()
        .ok_or_else(|| EncodeError("raw JSON that is not text".into()))?;
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| EncodeError(format!("raw JSON: {e}")))?;
    super::put_value(out, &value);
    Ok(())
}

/// An object of one entry, `{variant: ...}`, as serde_json writes an enum's variant with data.
fn open_variant(out: &mut Vec<u8>, variant: &str) {
    out.push(OBJECT);
    put_varint(out, 1);
    put_key(out, variant);
}

/// Serializer methods of [`Encoder`] that write a narrow integer as the wide one.
macro_rules! widen {
    ($($method:ident : $type:ty => $wide:ident),*) => {$(
        fn $method(self, v: $type) -> Result<()> {
            self.$wide(v.into())
        }
    )*};
}

impl<'a> ser::Serializer for Encoder<'a> {
    type Ok = ();
    type Error = EncodeError;
    type SerializeSeq = Container<'a>;
    type SerializeTuple = Container<'a>;
    type SerializeTupleStruct = Container<'a>;
    type SerializeTupleVariant = Container<'a>;
    type SerializeMap = Container<'a>;
    type SerializeStruct = Container<'a>;
    type SerializeStructVariant = Container<'a>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }

    widen!(
        serialize_i8: i8 => serialize_i64,
        serialize_i16: i16 => serialize_i64,
        serialize_i32: i32 => serialize_i64,
        serialize_u8: u8 => serialize_u64,
        serialize_u16: u16 => serialize_u64,
        serialize_u32: u32 => serialize_u64
    );

    fn serialize_i64(self, v: i64) -> Result<()> {
        put_int(self.out, v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<()> {
        match (u64::try_from(v), i64::try_from(v)) {
            (Ok(u), _) => self.serialize_u64(u),
            (_, Ok(i)) => self.serialize_i64(i),
            _ => Err(EncodeError("number out of range".into())),
        }
    }

    fn serialize_u64(self, v: u64) -> Result<()> {
        self.out.push(UINT);
        put_varint(self.out, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<()> {
        let v = u64::try_from(v).map_err(|_| EncodeError("number out of range".into()))?;
        self.serialize_u64(v)
    }

    fn serialize_f32(self, v: f32) -> Result<()> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<()> {
        // serde_json: a float that is not finite is null.
        if v.is_finite() {
            self.out.push(FLOAT);
            self.out.extend_from_slice(&v.to_le_bytes());
        } else {
            self.out.push(NULL);
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        put_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<()> {
        put_string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.out.push(ARRAY);
        put_varint(self.out, v.len() as u64);
        for b in v {
            self.out.push(UINT);
            put_varint(self.out, u64::from(*b));
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        self.out.push(NULL);
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<()> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        open_variant(self.out, variant);
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Container<'a>> {
        Ok(Container::open(self.out, ARRAY))
    }

    fn serialize_tuple(self, len: usize) -> Result<Container<'a>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Container<'a>> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Container<'a>> {
        open_variant(self.out, variant);
        Ok(Container::open(self.out, ARRAY))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Container<'a>> {
        Ok(Container::open(self.out, OBJECT))
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Container<'a>> {
        if name == RAW_VALUE_TOKEN {
            let count_at = self.out.len();
            return Ok(Container {
                out: self.out,
                count_at,
                count: 0,
                raw: true,
            });
        }
        Ok(Container::open(self.out, OBJECT))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Container<'a>> {
        open_variant(self.out, variant);
        Ok(Container::open(self.out, OBJECT))
    }
}

/// The sequence-like serde traits, each writing one array element per call.
macro_rules! array_container {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Container<'_> {
            type Ok = ();
            type Error = EncodeError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.element(value)
            }

            fn end(self) -> Result<()> {
                self.close()
            }
        }
    )*};
}

array_container!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Container<'_> {
    type Ok = ();
    type Error = EncodeError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.count += 1;
        let key = key.serialize(KeyText)?;
        put_key(self.out, &key);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(Encoder { out: self.out })
    }

    fn end(self) -> Result<()> {
        self.close()
    }
}

/// The struct-like serde traits, each writing one object entry per call.
macro_rules! object_container {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Container<'_> {
            type Ok = ();
            type Error = EncodeError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<()> {
                self.field(key, value)
            }

            fn end(self) -> Result<()> {
                self.close()
            }
        }
    )*};
}

object_container!(SerializeStruct, SerializeStructVariant);

/// A map key as text, as serde_json takes it: a string, a char, a number or a bool.
struct KeyText;

fn not_a_key<T>() -> Result<T> {
    Err(EncodeError(
        "a map key must be a string, a number or a bool".into(),
    ))
}

/// Serializer methods of [`KeyText`] that take a value written as its text.
macro_rules! key_as_text {
    ($($method:ident : $type:ty),*) => {$(
        fn $method(self, v: $type) -> Result<String> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = EncodeError;
    type SerializeSeq = ser::Impossible<String, EncodeError>;
    type SerializeTuple = ser::Impossible<String, EncodeError>;
    type SerializeTupleStruct = ser::Impossible<String, EncodeError>;
    type SerializeTupleVariant = ser::Impossible<String, EncodeError>;
    type SerializeMap = ser::Impossible<String, EncodeError>;
    type SerializeStruct = ser::Impossible<String, EncodeError>;
    type SerializeStructVariant = ser::Impossible<String, EncodeError>;

    key_as_text!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_char: char,
        serialize_str: &str
    );

    fn serialize_f32(self, _: f32) -> Result<String> {
        not_a_key()
    }

    fn serialize_f64(self, _: f64) -> Result<String> {
        not_a_key()
    }

    fn serialize_bytes(self, _: &[u8]) -> Result<String> {
        not_a_key()
    }

    fn serialize_none(self) -> Result<String> {
        not_a_key()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String> {
        not_a_key()
    }

    fn serialize_unit(self) -> Result<String> {
        not_a_key()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<String> {
        not_a_key()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String> {
        Ok(variant.to_string())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String> {
        not_a_key()
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq> {
        not_a_key()
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple> {
        not_a_key()
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        not_a_key()
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        not_a_key()
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap> {
        not_a_key()
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct> {
        not_a_key()
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        not_a_key()
    }
}
