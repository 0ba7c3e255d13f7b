//! ffprobe: what a file holds, and which bad input it is when it holds nothing usable.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::MediaConfig;
use crate::process::{Limits, ToolError, run_tool, stderr_summary};
use crate::types::{MediaError, Probe};

/// ffprobe's JSON for one file is a few kilobytes; anything far past that is not a probe.
const PROBE_OUTPUT_LIMIT: u64 = 4 << 20;
/// Below this ffprobe only guessed the format (random bytes can pass as MP3 at 24 or less;
/// a real container scores 50 from its extension or 100 from its content).
const MIN_PROBE_SCORE: i64 = 25;
/// Codecs ffmpeg uses for text shown as pictures: a text file is not a video.
const TEXT_CODECS: &[&str] = &["ansi", "bintext", "xbin", "idf", "tty"];

/// The probe plus what decoding needs and the contract type does not carry.
#[derive(Debug, Clone)]
pub(crate) struct Probed {
    pub probe: Probe,
    /// The frame rate as ffprobe wrote it ("30000/1001"), for an exact `fps` filter.
    pub fps_expr: String,
    /// ffprobe's `format_name` (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub format_name: String,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    disposition: HashMap<String, i64>,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize)]
struct Format {
    format_name: Option<String>,
    duration: Option<String>,
    bit_rate: Option<String>,
    probe_score: Option<i64>,
}

/// Runs ffprobe on a local file and turns its answer into a [`Probe`] or the matching error.
pub(crate) async fn probe_file(path: &Path, cfg: &MediaConfig) -> Result<Probed, MediaError> {
    let size_bytes = tokio::fs::metadata(path)
        .await
        .map_err(|e| MediaError::Io(format!("{}: {e}", path.display())))?
        .len();
    if size_bytes == 0 {
        return Err(MediaError::NotAVideo("the file is empty (0 bytes)".into()));
    }
    let whitelist = cfg.format_whitelist();
    let args: Vec<String> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        &whitelist,
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file_arg(path)])
    .collect();
    let out = run_tool(
        &cfg.ffprobe,
        &args,
        Limits::of(cfg),
        cfg.probe_timeout,
        PROBE_OUTPUT_LIMIT,
        16 << 10,
    )
    .await
    .map_err(|e| tool_error("ffprobe", e))?;
    if !out.success {
        if let Some(e) = limit_hit("ffprobe", &out.stderr, out.signal, cfg) {
            return Err(e);
        }
        if let Some(format) = refused_format(&out.stderr) {
            return Err(format_refused(&format));
        }
        return Err(classify_unreadable(path, &out.stderr).await);
    }
    let probed = parse_output(&out.stdout, size_bytes)?;
    if !cfg.format_allowed(&probed.format_name) {
        return Err(format_refused(&probed.format_name));
    }
    Ok(probed)
}

/// ffprobe's JSON (`-show_format -show_streams`) for a file of `size_bytes` → what a decode
/// needs, or the error that says which bad input it is. Public for the fuzz target only.
#[doc(hidden)]
pub fn parse_probe_output(json: &[u8], size_bytes: u64) -> Result<Probe, MediaError> {
    parse_output(json, size_bytes).map(|p| p.probe)
}

pub(crate) fn parse_output(json: &[u8], size_bytes: u64) -> Result<Probed, MediaError> {
    let parsed: Output = serde_json::from_slice(json).map_err(|e| {
        let mut why = e.to_string();
        why.truncate(200);
        MediaError::Tool(format!("ffprobe printed unexpected JSON: {why}"))
    })?;
    interpret(parsed, size_bytes)
}

fn format_refused(format: &str) -> MediaError {
    MediaError::NotAVideo(format!(
        "container format {} is not allowed (media.allowed_formats)",
        crate::fetch::shown(format)
    ))
}

/// The demuxer ffmpeg refused for not being on `-format_whitelist`: its log line reads
/// "[hls @ 0x55…] Format not on whitelist 'mov,…'".
fn refused_format(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        if !l.contains("not on whitelist") || !l.starts_with('[') {
            return None;
        }
        let name = l[1..].split(" @ ").next()?;
        Some(name.to_string())
    })
}

/// ffmpeg/ffprobe stopped by their process limits: allocation failures under RLIMIT_DATA,
/// SIGXCPU or SIGKILL at RLIMIT_CPU.
pub(crate) fn limit_hit(
    tool: &str,
    stderr: &str,
    signal: Option<i32>,
    cfg: &MediaConfig,
) -> Option<MediaError> {
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    // Allocation failures read differently per codec ("Cannot allocate memory",
    // "get_buffer() failed", "Could not allocate ...").
    let out_of_memory = [
        "Cannot allocate memory",
        "get_buffer() failed",
        "Could not allocate",
    ]
    .iter()
    .any(|m| stderr.contains(m));
    if cfg.ffmpeg_memory_bytes > 0 && out_of_memory {
        return Some(MediaError::Limit(format!(
            "{tool} ran out of its memory limit of {} bytes (media.ffmpeg_memory_bytes)",
            cfg.ffmpeg_memory_bytes
        )));
    }
    if cfg.ffmpeg_cpu_secs > 0 && matches!(signal, Some(SIGXCPU) | Some(SIGKILL)) {
        return Some(MediaError::Limit(format!(
            "{tool} was stopped by its CPU limit of {} s (media.ffmpeg_cpu_secs)",
            cfg.ffmpeg_cpu_secs
        )));
    }
    None
}

/// `file:` keeps ffmpeg from reading protocol prefixes ("concat:", "http:") out of a path.
pub(crate) fn file_arg(path: &Path) -> String {
    format!("file:{}", path.display())
}

pub(crate) fn tool_error(tool: &str, e: ToolError) -> MediaError {
    match e {
        ToolError::Spawn(msg) => MediaError::Tool(msg),
        // Transient on purpose: a loaded machine may finish it on a later attempt, and the
        // queue's delivery limit ends the retries of a file that always hangs.
        ToolError::TimedOut(t) => MediaError::Io(format!(
            "{tool} did not finish within {} s (media.probe_timeout / media.decode_timeout)",
            t.as_secs()
        )),
        ToolError::TooMuchOutput { limit } => {
            MediaError::NotAVideo(format!("{tool} printed more than {limit} bytes about it"))
        }
        ToolError::Io(msg) => MediaError::Io(format!("{tool}: {msg}")),
    }
}

/// ffprobe refused the file. If it starts like a known container it is a damaged or cut-off
/// copy of a real video (truncated); otherwise it is something else (not a video).
async fn classify_unreadable(path: &Path, stderr: &str) -> MediaError {
    let head = read_head(path).await;
    let summary = stderr_summary(stderr);
    if looks_like_media(&head) {
        MediaError::Truncated(summary)
    } else {
        MediaError::NotAVideo(format!("no known video format ({summary})"))
    }
}

async fn read_head(path: &Path) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(16);
    if let Ok(f) = tokio::fs::File::open(path).await {
        let _ = f.take(16).read_to_end(&mut buf).await;
    }
    buf
}

/// Magic numbers of the containers short-form video comes in.
pub(crate) fn looks_like_media(head: &[u8]) -> bool {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let iso_box = ["ftyp", "moov", "mdat", "free", "wide", "skip", "pnot"]
        .iter()
        .any(|b| at(4, b.as_bytes()));
    iso_box
        || at(0, &[0x1A, 0x45, 0xDF, 0xA3]) // Matroska / WebM (EBML)
        || at(0, b"RIFF")
        || at(0, b"FLV")
        || at(0, b"OggS")
        || at(0, b"ID3")
        || at(0, &[0x00, 0x00, 0x01, 0xBA]) // MPEG program stream
}

fn interpret(out: Output, size_bytes: u64) -> Result<Probed, MediaError> {
    let format = out.format.as_ref();
    let format_name = format
        .and_then(|f| f.format_name.clone())
        .unwrap_or_default();
    if let Some(score) = format.and_then(|f| f.probe_score)
        && score < MIN_PROBE_SCORE
    {
        return Err(MediaError::NotAVideo(format!(
            "unrecognised data (ffprobe guessed {format_name:?} with score {score}/100)"
        )));
    }
    if format_name == "tty" || format_name == "image2" || format_name.ends_with("_pipe") {
        return Err(MediaError::NotAVideo(format!(
            "a {format_name} file, not a video"
        )));
    }
    let is_cover_art = |s: &&Stream| s.disposition.get("attached_pic").copied() == Some(1);
    let video = out
        .streams
        .iter()
        .filter(|s| s.codec_type.as_deref() == Some("video"))
        .find(|s| !is_cover_art(s));
    let has_audio = out
        .streams
        .iter()
        .any(|s| s.codec_type.as_deref() == Some("audio"));
    if let Some(codec) = video.and_then(|v| v.codec_name.as_deref())
        && TEXT_CODECS.contains(&codec)
    {
        return Err(MediaError::NotAVideo(format!(
            "text ({codec}), not a video"
        )));
    }
    if video.is_none() && !has_audio {
        return Err(MediaError::NotAVideo(format!(
            "{format_name:?} holds neither a video nor an audio stream"
        )));
    }
    let duration_s = format
        .and_then(|f| parse_f64(f.duration.as_deref()))
        .or_else(|| video.and_then(|v| parse_f64(v.duration.as_deref())))
        .filter(|d| d.is_finite() && *d > 0.0);
    let Some(duration_s) = duration_s else {
        return Err(MediaError::NotAVideo(format!(
            "{format_name:?} has no duration (a still image or an empty stream)"
        )));
    };

    let rotation = video.map(rotation_ccw).unwrap_or(0);
    let (mut width, mut height) = video
        .map(|v| (v.width.unwrap_or(0), v.height.unwrap_or(0)))
        .unwrap_or((0, 0));
    if rotation % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    if video.is_some() && (width == 0 || height == 0) {
        return Err(MediaError::Truncated(
            "the video stream has no picture size".into(),
        ));
    }
    let rate = video.and_then(|v| {
        [v.avg_frame_rate.as_deref(), v.r_frame_rate.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|r| parse_rate(r).map(|fps| (r.to_string(), fps)))
    });
    // A video without a usable rate still decodes; 30 fps is the common case on phones.
    let (fps_expr, fps) = rate.unwrap_or_else(|| ("30".into(), 30.0));
    let probe = Probe {
        duration_s,
        width,
        height,
        rotation,
        fps: if video.is_some() { fps } else { 0.0 },
        has_video: video.is_some(),
        has_audio,
        video_codec: video.and_then(|v| v.codec_name.clone()),
        bit_rate: format.and_then(|f| f.bit_rate.as_deref()?.parse().ok()),
        size_bytes,
    };
    Ok(Probed {
        probe,
        fps_expr,
        format_name,
    })
}

/// Rotation in ffprobe's display-matrix convention (counter-clockwise degrees, as ffmpeg
/// applies it when it autorotates), normalised to 0/90/180/270. The legacy `rotate` tag is
/// clockwise, so it is converted.
fn rotation_ccw(v: &Stream) -> i32 {
    let degrees = v
        .side_data_list
        .iter()
        .find_map(|s| s.rotation)
        .or_else(|| {
            v.tags
                .get("rotate")
                .and_then(|r| r.parse::<f64>().ok())
                .map(|cw| -cw)
        })
        .unwrap_or(0.0);
    let quarter = (degrees / 90.0).round() as i32;
    quarter.rem_euclid(4) * 90
}

fn parse_f64(s: Option<&str>) -> Option<f64> {
    s?.trim().parse().ok()
}

fn parse_rate(r: &str) -> Option<f64> {
    let (num, den) = r.split_once('/').unwrap_or((r, "1"));
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    let fps = num / den;
    (fps.is_finite() && fps > 0.0 && fps <= 1000.0).then_some(fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("30/1"), Some(30.0));
        assert!((parse_rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(parse_rate("25"), Some(25.0));
    }

    #[test]
    fn sniffs_containers() {
        assert!(looks_like_media(b"\0\0\0\x20ftypisom\0\0\0\0"));
        assert!(looks_like_media(&[0x1A, 0x45, 0xDF, 0xA3, 1, 2]));
        assert!(!looks_like_media(b"hello this is a text"));
        assert!(!looks_like_media(b""));
    }
}
