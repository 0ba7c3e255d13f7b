//! ffmpeg decodes: sampled RGB frames at reduced sizes, and the audio track as 16 kHz mono.
//!
//! One decode pass yields every frame spec asked for together: a single ffmpeg process
//! decodes the video once and a `split` filter feeds one `fps,scale` branch per spec, each
//! written to its own Unix socket. Decoding is the expensive part; each extra branch costs
//! only its scaling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::UnixListener;

use crate::config::{HwDecode, MediaConfig};
use crate::probe::{Probed, file_arg, limit_hit, tool_error};
use crate::process::{
    Limits, SocketOutput, ToolOutput, run_tool, run_with_sockets, stderr_summary,
};
use crate::types::{AUDIO_SAMPLE_RATE, Audio, FrameSpec, Frames, MediaError};

/// Decoded audio per second of track: 16 kHz mono f32.
const AUDIO_BYTES_PER_SEC: f64 = AUDIO_SAMPLE_RATE as f64 * 4.0;

/// Frame rate used for the filter and the frame times of one spec.
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

/// Seconds of input a decode reads: the probed duration and half a second of slack, never past
/// `media.max_duration`. A container that understates its length cannot make a decode run
/// (and allocate) past what was checked and reserved.
fn read_window(probed: &Probed, cfg: &MediaConfig) -> f64 {
    (probed.probe.duration_s + 0.5).min(cfg.max_duration.as_secs_f64())
}

/// The limits the probe lets us check before decoding anything.
pub(crate) fn check_limits(probed: &Probed, cfg: &MediaConfig) -> Result<(), MediaError> {
    let p = &probed.probe;
    let max = cfg.max_duration.as_secs_f64();
    if p.duration_s > max {
        return Err(MediaError::Limit(format!(
            "the media lasts {:.0} s, longer than the {max:.0} s allowed (media.max_duration_secs)",
            p.duration_s
        )));
    }
    if p.has_video && p.width.max(p.height) > cfg.max_dimension {
        return Err(MediaError::Limit(format!(
            "the picture is {}x{}, larger than {} px on a side (media.max_dimension)",
            p.width, p.height, cfg.max_dimension
        )));
    }
    Ok(())
}

/// One spec's place in a pass: output size, sampling, and the bytes it may produce.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub spec: FrameSpec,
    width: u32,
    height: u32,
    rate_expr: String,
    rate: f64,
    /// Upper bound of the output: the memory reserved for it, and where reading stops.
    pub bytes: u64,
}

impl Planned {
    fn frame_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3
    }
}

/// Sizes, rates and memory bounds of `specs` for this video.
pub(crate) fn plan(probed: &Probed, specs: &[FrameSpec], cfg: &MediaConfig) -> Vec<Planned> {
    let window = read_window(probed, cfg);
    specs
        .iter()
        .map(|&spec| {
            let p = &probed.probe;
            let (width, height) = output_size(p.width, p.height, spec.max_side);
            let (rate_expr, rate) = sample_rate(spec, probed);
            // The fps filter can add a frame at either end; the bound covers that.
            let frames = (window * rate).ceil() as u64 + 2;
            let mut planned = Planned {
                spec,
                width,
                height,
                rate_expr,
                rate,
                bytes: 0,
            };
            planned.bytes = frames * planned.frame_bytes();
            planned
        })
        .collect()
}

/// Bytes an audio decode may produce (and reserves).
pub(crate) fn audio_bytes(probed: &Probed, cfg: &MediaConfig) -> u64 {
    (read_window(probed, cfg) * AUDIO_BYTES_PER_SEC) as u64
}

/// A private directory for the sockets of one pass, removed with everything in it on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn create() -> Result<Self, MediaError> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short: a socket path must fit in 108 bytes.
        let dir = std::env::temp_dir().join(format!("fleet-dec-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| MediaError::Io(format!("creating {}: {e}", dir.display())))?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One ffmpeg run decoding the video once into every planned spec. Each spec's result stands
/// alone (a spec whose branch produced no frame fails, the others do not); a failure of the
/// run as a whole is the outer error.
pub(crate) async fn decode_pass(
    path: &Path,
    probed: &Probed,
    planned: &[Planned],
    cfg: &MediaConfig,
) -> Result<Vec<Result<Frames, MediaError>>, MediaError> {
    if !probed.probe.has_video {
        return Err(MediaError::NoVideoStream);
    }
    check_limits(probed, cfg)?;
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let hw = match cfg.hw_decode {
        HwDecode::Cuda { device } if !HW_DECODE_OFF.load(Ordering::Relaxed) => Some(device),
        _ => None,
    };
    let Some(device) = hw else {
        return decode_pass_with(path, probed, planned, cfg, None).await;
    };
    match decode_pass_with(path, probed, planned, cfg, Some(device)).await {
        Err(hw_err @ (MediaError::Truncated(_) | MediaError::Tool(_) | MediaError::Limit(_))) => {
            // NVDEC may be what failed (no driver, codec or size it can't take, a CUDA
            // context that did not fit the process limits): the CPU decides. If it decodes
            // the file, NVDEC is off for this process.
            let cpu = decode_pass_with(path, probed, planned, cfg, None).await;
            if cpu.is_ok() && !HW_DECODE_OFF.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    device, error = %hw_err,
                    "NVDEC decode failed where the CPU decoder succeeded; decoding on the CPU from now on"
                );
            }
            cpu
        }
        other => other,
    }
}

/// Set once NVDEC failed on a file the CPU decoded: later passes skip it.
static HW_DECODE_OFF: AtomicBool = AtomicBool::new(false);

/// Whether this process has turned NVDEC off after a failure (see [`HwDecode::Cuda`]).
pub fn hw_decode_disabled() -> bool {
    HW_DECODE_OFF.load(Ordering::Relaxed)
}

async fn decode_pass_with(
    path: &Path,
    probed: &Probed,
    planned: &[Planned],
    cfg: &MediaConfig,
    cuda_device: Option<u32>,
) -> Result<Vec<Result<Frames, MediaError>>, MediaError> {
    let dir = SocketDir::create()?;
    let mut outputs = Vec::with_capacity(planned.len());
    let mut graph = format!("[0:v:0]split={}", planned.len());
    for i in 0..planned.len() {
        graph.push_str(&format!("[s{i}]"));
    }
    let mut args = input_args(path, read_window(probed, cfg), cfg, cuda_device);
    let mut maps = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]fps={},scale={}:{}:flags=area[o{i}]",
            p.rate_expr, p.width, p.height
        ));
        let sock = dir.0.join(format!("o{i}"));
        let listener = UnixListener::bind(&sock)
            .map_err(|e| MediaError::Io(format!("listening on {}: {e}", sock.display())))?;
        outputs.push(SocketOutput {
            listener,
            limit: p.bytes,
        });
        maps.extend([
            "-map".to_string(),
            format!("[o{i}]"),
            "-f".into(),
            "rawvideo".into(),
            "-pix_fmt".into(),
            "rgb24".into(),
            format!("unix:{}", sock.display()),
        ]);
    }
    args.extend(["-filter_complex".to_string(), graph]);
    args.extend(maps);
    let mut limits = Limits::of(cfg);
    if cuda_device.is_some() {
        // A CUDA context maps far more private memory than the memory limit's mechanism
        // (RLIMIT_DATA, which on Linux counts private mappings) allows: on the H200 host every
        // NVDEC pass failed at once under the 2 GiB default. The outputs stay bounded by their
        // byte limits, the input by the probe's limits, the run by the CPU limit.
        limits.memory_bytes = 0;
    }
    let run = run_with_sockets(&cfg.ffmpeg, &args, limits, cfg.decode_timeout, outputs)
        .await
        .map_err(decode_error)?;
    let out = ToolOutput {
        success: run.success,
        signal: run.signal,
        stdout: Vec::new(),
        stderr: run.stderr,
    };
    check_decode(&out, "video", cfg)?;
    Ok(planned
        .iter()
        .zip(run.outputs)
        .map(|(p, data)| frames_of(p, data))
        .collect())
}

/// An ffmpeg decode run that did not finish: more output than its bound, or the tool's error.
fn decode_error(e: crate::process::ToolError) -> MediaError {
    match e {
        crate::process::ToolError::TooMuchOutput { limit } => MediaError::DecodeTooLarge {
            bytes: limit + 1,
            limit,
        },
        e => tool_error("ffmpeg", e),
    }
}

fn frames_of(p: &Planned, mut data: Vec<u8>) -> Result<Frames, MediaError> {
    let frame_bytes = p.frame_bytes() as usize;
    let count = data.len() / frame_bytes;
    if count == 0 {
        return Err(MediaError::Truncated(
            "no video frame could be decoded".into(),
        ));
    }
    data.truncate(count * frame_bytes);
    data.shrink_to_fit();
    let times = (0..count).map(|i| i as f64 / p.rate).collect();
    Ok(Frames {
        spec: p.spec,
        width: p.width,
        height: p.height,
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
    check_limits(probed, cfg)?;
    let bound = audio_bytes(probed, cfg);
    let rate = AUDIO_SAMPLE_RATE.to_string();
    let mut args = input_args(path, read_window(probed, cfg), cfg, None);
    args.extend(
        [
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", &rate, "-f", "f32le", "pipe:1",
        ]
        .map(String::from),
    );
    let out = run_tool(
        &cfg.ffmpeg,
        &args,
        Limits::of(cfg),
        cfg.decode_timeout,
        bound,
        bound as usize,
    )
    .await
    .map_err(decode_error)?;
    check_decode(&out, "audio", cfg)?;
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

/// Everything before and including the input: quiet, threads, only local files and allowed
/// demuxers (a playlist inside a file must not make ffmpeg open other files or URLs), and at
/// most `seconds` of input.
fn input_args(
    path: &Path,
    seconds: f64,
    cfg: &MediaConfig,
    cuda_device: Option<u32>,
) -> Vec<String> {
    let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-v", "error"]
        .map(String::from)
        .into();
    if cfg.ffmpeg_threads > 0 {
        args.extend(["-threads".into(), cfg.ffmpeg_threads.to_string()]);
    }
    if let Some(device) = cuda_device {
        // Decoded surfaces are copied back to system memory for the CPU filters that follow.
        args.extend([
            "-hwaccel".into(),
            "cuda".into(),
            "-hwaccel_device".into(),
            device.to_string(),
        ]);
    }
    args.extend([
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        cfg.format_whitelist(),
        "-t".into(),
        format!("{seconds:.3}"),
        "-i".into(),
    ]);
    args.push(file_arg(path));
    args
}

/// A decode that failed, or that "succeeded" over a file cut short, is a truncated file:
/// the probe already said the container is fine. Unless ffmpeg hit its process limits.
fn check_decode(out: &ToolOutput, what: &str, cfg: &MediaConfig) -> Result<(), MediaError> {
    if !out.success
        && let Some(e) = limit_hit("ffmpeg", &out.stderr, out.signal, cfg)
    {
        return Err(e);
    }
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
