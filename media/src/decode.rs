//! ffmpeg decodes: sampled RGB frames at a reduced size, and the audio track as 16 kHz mono.

use std::path::Path;

use crate::config::MediaConfig;
use crate::probe::{Probed, file_arg, tool_error};
use crate::process::{ToolOutput, run_tool, stderr_summary};
use crate::types::{AUDIO_SAMPLE_RATE, Audio, FrameSpec, Frames, MediaError};

/// Frame rate used for the filter and the frame times of one decode.
fn sample_rate(spec: FrameSpec, probed: &Probed) -> (String, f64) {
    match spec.fps_milli {
        Some(milli) => {
            let milli = milli.max(1);
            (format!("{milli}/1000"), f64::from(milli) / 1000.0)
        }
        None => (probed.fps_expr.clone(), probed.probe.fps),
    }
}

/// Output size: the display size scaled so its longest side is at most `max_side`, aspect
/// kept, both sides even (what most pixel formats and filters want), never upscaled.
pub(crate) fn output_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height).max(1);
    let target = max_side.max(2).min(longest);
    let scale = f64::from(target) / f64::from(longest);
    let even = |v: u32| ((f64::from(v) * scale / 2.0).round() as u32 * 2).max(2);
    (even(width), even(height))
}

pub(crate) async fn decode_frames(
    path: &Path,
    probed: &Probed,
    spec: FrameSpec,
    cfg: &MediaConfig,
) -> Result<Frames, MediaError> {
    let probe = &probed.probe;
    if !probe.has_video {
        return Err(MediaError::NoVideoStream);
    }
    let (width, height) = output_size(probe.width, probe.height, spec.max_side);
    let (rate_expr, rate) = sample_rate(spec, probed);
    let frame_bytes = u64::from(width) * u64::from(height) * 3;
    // The fps filter can add a frame at either end; the bound covers that.
    let expected_frames = (probe.duration_s * rate).ceil() as u64 + 2;
    let expected_bytes = expected_frames * frame_bytes;
    if expected_bytes > cfg.decode_memory_bytes {
        return Err(MediaError::DecodeTooLarge {
            bytes: expected_bytes,
            limit: cfg.decode_memory_bytes,
        });
    }
    let filter = format!("fps={rate_expr},scale={width}:{height}:flags=area");
    let mut args = input_args(path, cfg);
    args.extend(
        ["-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter]
            .into_iter()
            .chain(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
            .map(String::from),
    );
    let out = run_tool(
        &cfg.ffmpeg,
        &args,
        cfg.decode_timeout,
        cfg.decode_memory_bytes,
        expected_bytes as usize,
    )
    .await
    .map_err(|e| match e {
        crate::process::ToolError::TooMuchOutput { limit } => MediaError::DecodeTooLarge {
            bytes: limit + 1,
            limit,
        },
        e => tool_error("ffmpeg", e),
    })?;
    check_decode(&out, "video")?;
    let mut data = out.stdout;
    let count = data.len() / frame_bytes as usize;
    if count == 0 {
        return Err(MediaError::Truncated(
            "no video frame could be decoded".into(),
        ));
    }
    data.truncate(count * frame_bytes as usize);
    data.shrink_to_fit();
    let times = (0..count).map(|i| i as f64 / rate).collect();
    Ok(Frames {
        spec,
        width,
        height,
        times,
        data,
    })
}

pub(crate) async fn decode_audio(
    path: &Path,
    probed: &Probed,
    cfg: &MediaConfig,
) -> Result<Audio, MediaError> {
    if !probed.probe.has_audio {
        return Err(MediaError::NoAudioTrack);
    }
    let expected_bytes =
        ((probed.probe.duration_s + 1.0) * f64::from(AUDIO_SAMPLE_RATE) * 4.0) as u64;
    let rate = AUDIO_SAMPLE_RATE.to_string();
    let mut args = input_args(path, cfg);
    args.extend(
        [
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", &rate, "-f", "f32le", "pipe:1",
        ]
        .map(String::from),
    );
    let out = run_tool(
        &cfg.ffmpeg,
        &args,
        cfg.decode_timeout,
        cfg.decode_memory_bytes,
        expected_bytes as usize,
    )
    .await
    .map_err(|e| tool_error("ffmpeg", e))?;
    check_decode(&out, "audio")?;
    let samples: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if samples.is_empty() {
        return Err(MediaError::Truncated(
            "the audio track holds no samples".into(),
        ));
    }
    Ok(Audio {
        sample_rate: AUDIO_SAMPLE_RATE,
        samples,
    })
}

fn input_args(path: &Path, cfg: &MediaConfig) -> Vec<String> {
    let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-v", "error"]
        .map(String::from)
        .into();
    if cfg.ffmpeg_threads > 0 {
        args.extend(["-threads".into(), cfg.ffmpeg_threads.to_string()]);
    }
    // Only local files: a playlist inside a file must not make ffmpeg fetch URLs (SSRF).
    args.extend(["-protocol_whitelist", "file", "-i"].map(String::from));
    args.push(file_arg(path));
    args
}

/// A decode that failed, or that "succeeded" over a file cut short, is a truncated file:
/// the probe already said the container is fine.
fn check_decode(out: &ToolOutput, what: &str) -> Result<(), MediaError> {
    let cut_short =
        out.stderr.contains("partial file") || out.stderr.contains("moov atom not found");
    if !out.success || cut_short {
        return Err(MediaError::Truncated(format!(
            "{what} decode failed: {}",
            stderr_summary(&out.stderr)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::output_size;

    #[test]
    fn output_size_keeps_aspect_and_even_sides() {
        assert_eq!(output_size(720, 1280, 160), (90, 160));
        assert_eq!(output_size(1920, 1080, 160), (160, 90));
        assert_eq!(output_size(320, 240, 1920), (320, 240));
        assert_eq!(output_size(101, 51, 4000), (102, 52));
        assert_eq!(output_size(1000, 2, 160), (160, 2));
    }
}
