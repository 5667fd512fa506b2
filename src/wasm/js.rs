//! Plumbing between Rust and JS values: errors with a `kind`, and serde both ways.

use js_sys::{Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

use crate::error::Error;

/// A JS `Error` with a `kind` property.
pub fn error(kind: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = Reflect::set(&e, &"kind".into(), &kind.into());
    e.into()
}

pub fn refcast_error(e: Error) -> JsValue {
    error(e.kind(), &e.to_string())
}

pub fn usage(message: impl AsRef<str>) -> JsValue {
    error("usage", message.as_ref())
}

pub fn set(target: &Object, key: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(target, &key.into(), &value.into());
}

pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| usage(format!("cannot convert a result to JS: {e}")))
}

pub fn from_js<T: for<'de> Deserialize<'de>>(value: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(value).map_err(|e| usage(format!("{what}: {e}")))
}
