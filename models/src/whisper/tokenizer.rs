//! Token ids back to text, from `tokenizer.json`'s byte-level BPE vocabulary (GPT-2 style: every
//! byte is stored as a printable character, so a token's characters map back to its bytes).
//! Only decoding is needed: the prompt is made of special tokens whose ids are fixed.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ModelError;

/// Special tokens of the English-only Whisper vocabulary.
pub const EOT: u32 = 50256;
pub const SOT: u32 = 50257;
pub const NO_SPEECH: u32 = 50361;
pub const NO_TIMESTAMPS: u32 = 50362;
/// `<|0.00|>`; token `TIMESTAMP_BEGIN + k` is the time `k * 0.02` s into the window.
pub const TIMESTAMP_BEGIN: u32 = 50363;

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeModel,
}

#[derive(Deserialize)]
struct BpeModel {
    vocab: HashMap<String, u32>,
}

pub struct Tokenizer {
    /// Bytes of each text token (ids below [`EOT`]).
    bytes: Vec<Vec<u8>>,
}

/// GPT-2's table from printable characters back to bytes: printable Latin-1 bytes stand for
/// themselves, the others are shifted to U+0100 and up, in byte order.
fn byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("U+0100..U+0143 are chars")
        };
        map.insert(c, b);
    }
    map
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|reason| ModelError::Io {
            path: path.to_path_buf(),
            reason,
        })
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        let parsed: TokenizerJson =
            serde_json::from_str(text).map_err(|e| format!("not a tokenizer.json: {e}"))?;
        let decoder = byte_decoder();
        let mut bytes = vec![Vec::new(); EOT as usize];
        for (token, id) in parsed.model.vocab {
            if id >= EOT {
                continue;
            }
            bytes[id as usize] = token
                .chars()
                .map(|c| {
                    decoder.get(&c).copied().ok_or_else(|| {
                        format!("token {id} has a character {c:?} outside the byte table")
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(missing) = bytes.iter().position(Vec::is_empty) {
            return Err(format!("the vocabulary has no token {missing}"));
        }
        Ok(Self { bytes })
    }

    /// The text of `ids`; special and timestamp tokens are skipped. Bytes that do not form
    /// UTF-8 (a character split across a window edge) become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let data: Vec<u8> = ids
            .iter()
            .filter_map(|&id| self.bytes.get(id as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&data).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'Ċ'], b'\n');
        assert_eq!(d[&'!'], b'!');
    }

    #[test]
    fn decodes_multibyte_tokens() {
        // "Ã¼" is the byte pair of "ü"; specials and timestamps are dropped.
        let mut vocab = serde_json::Map::new();
        for (i, t) in ["ĠGr", "Ã¼", "ÃŁe"].iter().enumerate() {
            vocab.insert(t.to_string(), serde_json::json!(i));
        }
        let mut full = vec![];
        for i in 3..EOT {
            full.push((format!("x{i}"), i));
        }
        for (t, i) in full {
            vocab.insert(t, serde_json::json!(i));
        }
        let json = serde_json::json!({ "model": { "vocab": vocab } }).to_string();
        let tok = Tokenizer::from_json(&json).unwrap();
        assert_eq!(tok.decode(&[0, 1, 2, EOT, TIMESTAMP_BEGIN + 5]), " Grüße");
    }
}
