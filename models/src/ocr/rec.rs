//! PP-OCR line crops, the 0/180 degree classifier and CTC recognition, as rapidocr does them.

use super::geometry::{Pt, dist};
use crate::error::ModelError;
use crate::imgproc::{self, ChannelOrder, Rgb, RgbImage};
use crate::runtime::LoadedModel;

/// Recognition input height and the minimum padded width (rapidocr `rec_img_shape`).
pub const REC_H: usize = 48;
pub const REC_MIN_W: usize = 320;
/// Classifier input (rapidocr's PP-OCRv4 cls shape).
pub const CLS_H: usize = 48;
pub const CLS_W: usize = 192;
/// Recognizer input widths: a batch of lines is padded to the first width that holds its
/// widest line (rapidocr pads to the widest line itself, a new shape for nearly every batch).
/// Lines wider than the last are squeezed into it: 50 characters at 48 px height still read.
pub const WIDTHS: [usize; 6] = [320, 480, 640, 960, 1280, 1920];
/// A line is flipped only when the classifier is this sure it is upside down.
const CLS_THRESH: f32 = 0.9;

/// Straightens the text quad into an upright crop (rapidocr `get_rotate_crop_image`); tall
/// crops (vertical text) are turned 90 degrees.
pub fn crop_line(frame: Rgb<'_>, quad: &[Pt; 4]) -> RgbImage {
    let w = dist(quad[0], quad[1]).max(dist(quad[2], quad[3])) as usize;
    let h = dist(quad[0], quad[3]).max(dist(quad[1], quad[2])) as usize;
    let img = imgproc::warp_quad(frame, quad, w.max(1), h.max(1));
    if img.height as f32 / img.width as f32 >= 1.5 {
        imgproc::rotate90_ccw(&img)
    } else {
        img
    }
}

/// Resizes to height `target_h` keeping the aspect ratio (width capped at `max_w`) and writes
/// it normalized (`(x/255 - 0.5) / 0.5`, BGR) into a zero-padded `[3, target_h, max_w]` slot.
fn pack(img: &RgbImage, target_h: usize, max_w: usize, out: &mut [f32]) {
    let ratio = img.width as f32 / img.height.max(1) as f32;
    let w = ((target_h as f32 * ratio).ceil() as usize).clamp(1, max_w);
    let resized = imgproc::resize(img.view(), w, target_h);
    imgproc::to_chw(
        resized.view(),
        ChannelOrder::Bgr,
        1.0 / 255.0,
        [0.5; 3],
        [0.5; 3],
        max_w,
        out,
    );
}

/// The recognizer width for lines up to `w` pixels wide at height 48.
pub fn width_bucket(w: usize) -> usize {
    WIDTHS
        .iter()
        .copied()
        .find(|&b| b >= w)
        .unwrap_or(WIDTHS[WIDTHS.len() - 1])
}

/// Indices of `imgs` sorted by aspect ratio, as rapidocr batches them: lines of similar
/// width share a batch, so little of each batch is padding.
fn by_ratio(imgs: &[RgbImage]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..imgs.len()).collect();
    let ratio = |i: usize| imgs[i].width as f32 / imgs[i].height.max(1) as f32;
    idx.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)));
    idx
}

/// Turns upside-down lines right side up, in batches of `batch`.
pub fn classify(cls: &LoadedModel, imgs: &mut [RgbImage], batch: usize) -> Result<(), ModelError> {
    let order = by_ratio(imgs);
    let plane = 3 * CLS_H * CLS_W;
    for chunk in order.chunks(batch.max(1)) {
        let mut input = vec![0f32; chunk.len() * plane];
        crate::par::fill(&mut input, plane, |slot, buf| {
            pack(&imgs[chunk[slot]], CLS_H, CLS_W, buf)
        });
        let out = cls.infer(&[3, CLS_H as i64, CLS_W as i64], chunk.len(), &input)?;
        let probs = &out[0].data;
        for (slot, &i) in chunk.iter().enumerate() {
            let (p0, p180) = (probs[slot * 2], probs[slot * 2 + 1]);
            if p180 > p0 && p180 > CLS_THRESH {
                imgs[i] = imgproc::rotate180(&imgs[i]);
            }
        }
    }
    Ok(())
}

/// The recognizer's alphabet: index 0 is the CTC blank, then the model's `character`
/// metadata (one symbol per line), then a space, as PaddleOCR's CTCLabelDecode builds it.
pub fn alphabet(rec: &LoadedModel) -> Result<Vec<String>, ModelError> {
    let dict = rec
        .metadata
        .get("character")
        .ok_or_else(|| ModelError::BadShape {
            path: rec.file.path.clone(),
            detail: "no `character` metadata: not a PP-OCR recognition export with its dictionary"
                .into(),
        })?;
    let mut chars = vec![String::new()];
    chars.extend(
        dict.split('\n')
            .map(|s| s.trim_end_matches('\r').to_string()),
    );
    chars.push(" ".into());
    Ok(chars)
}

/// Recognized text of each line and its confidence (mean probability of the kept symbols).
/// `greedy`: the model returns its greedy CTC path, `[batch, steps, 2]` = (best probability,
/// best class as float), as the setup's `ppocr.rec.greedy` does; otherwise every class's
/// probability per step.
pub fn recognize(
    rec: &LoadedModel,
    alphabet: &[String],
    imgs: &[RgbImage],
    batch: usize,
    greedy: bool,
) -> Result<Vec<(String, f32)>, ModelError> {
    // Each line goes to its own width bucket, so what it reads does not depend on which other
    // lines share its batch (or whether it is batched at all).
    let bucket = |i: usize| {
        let ratio = (imgs[i].width as f32 / imgs[i].height.max(1) as f32)
            .max(REC_MIN_W as f32 / REC_H as f32);
        width_bucket((REC_H as f32 * ratio).ceil() as usize)
    };
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for i in by_ratio(imgs) {
        let w = bucket(i);
        match groups.iter_mut().find(|(gw, _)| *gw == w) {
            Some((_, v)) => v.push(i),
            None => groups.push((w, vec![i])),
        }
    }
    let mut results = vec![(String::new(), 0.0); imgs.len()];
    let chunks = groups
        .iter()
        .flat_map(|(w, idx)| idx.chunks(batch.max(1)).map(move |c| (*w, c)));
    for (width, chunk) in chunks {
        let plane = 3 * REC_H * width;
        let mut input = vec![0f32; chunk.len() * plane];
        crate::par::fill(&mut input, plane, |slot, buf| {
            pack(&imgs[chunk[slot]], REC_H, width, buf)
        });
        let out = rec.infer(&[3, REC_H as i64, width as i64], chunk.len(), &input)?;
        let (oshape, probs) = (&out[0].shape, &out[0].data);
        if greedy {
            if oshape.len() != 3 || oshape[2] != 2 {
                return Err(ModelError::BadShape {
                    path: rec.file.path.clone(),
                    detail: format!(
                        "output shape {oshape:?}, a greedy CTC head gives [batch, steps, 2]"
                    ),
                });
            }
            let steps = oshape[1] as usize;
            for (slot, &i) in chunk.iter().enumerate() {
                let seq = &probs[slot * steps * 2..(slot + 1) * steps * 2];
                let path = seq.chunks_exact(2).map(|s| (s[1] as usize, s[0]));
                results[i] = collapse(path, alphabet);
            }
            continue;
        }
        if oshape.len() != 3
            || oshape[2] as usize != alphabet.len() - 1 && oshape[2] as usize != alphabet.len()
        {
            return Err(ModelError::BadShape {
                path: rec.file.path.clone(),
                detail: format!(
                    "output shape {oshape:?} does not match its {}-symbol dictionary",
                    alphabet.len()
                ),
            });
        }
        let (steps, classes) = (oshape[1] as usize, oshape[2] as usize);
        for (slot, &i) in chunk.iter().enumerate() {
            let seq = &probs[slot * steps * classes..(slot + 1) * steps * classes];
            results[i] = ctc_decode(seq, steps, classes, alphabet);
        }
    }
    Ok(results)
}

/// Greedy CTC: best class per step, repeats collapsed, blanks dropped. The confidence is the
/// mean of the kept steps' probabilities (0 for an empty line).
pub fn ctc_decode(seq: &[f32], steps: usize, classes: usize, alphabet: &[String]) -> (String, f32) {
    let path = (0..steps).map(|t| {
        seq[t * classes..(t + 1) * classes].iter().enumerate().fold(
            (0, f32::MIN),
            |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
        )
    });
    collapse(path, alphabet)
}

/// The CTC rule over a greedy path of (best class, its probability) per step.
fn collapse(path: impl Iterator<Item = (usize, f32)>, alphabet: &[String]) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0usize);
    let mut prev = usize::MAX;
    for (best, p) in path {
        if best != 0 && best != prev {
            if let Some(symbol) = alphabet.get(best) {
                text.push_str(symbol);
            }
            sum += p;
            n += 1;
        }
        prev = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let alphabet: Vec<String> = ["", "a", "b", " "].iter().map(|s| s.to_string()).collect();
        // steps: a a blank a b b  -> "aab"
        let best = [1, 1, 0, 1, 2, 2];
        let mut seq = vec![0.0f32; best.len() * 4];
        for (t, &c) in best.iter().enumerate() {
            seq[t * 4 + c] = 0.8;
        }
        let (text, conf) = ctc_decode(&seq, best.len(), 4, &alphabet);
        assert_eq!(text, "aab");
        assert!((conf - 0.8).abs() < 1e-6);
    }
}
