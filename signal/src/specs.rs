//! The frames each analyzer asks the media pipeline for. Analyzers that ask for the same
//! spec share one decode per job, so the motion-based family all read [`MOTION_SPEC`].

use media::FrameSpec;

/// Every frame at 160 px on the long side: cuts need every frame, and 160 px keeps motion,
/// colour and histograms while a 30 s video stays around 40 MB. Used by `cut_analysis`,
/// `scene_segmentation`, `camera_analysis`, `visual_effects`, `temporal_flow` and
/// `color_analysis` (which needs the shots and subsamples to 2 fps itself; a separate 2 fps
/// decode would cost a second full decode of the video for a few kilobytes of pixels).
pub const MOTION_SPEC: FrameSpec = FrameSpec::every_frame(160);
pub const CUT_SPEC: FrameSpec = MOTION_SPEC;
pub const SCENE_SPEC: FrameSpec = MOTION_SPEC;
pub const CAMERA_SPEC: FrameSpec = MOTION_SPEC;
pub const EFFECTS_SPEC: FrameSpec = MOTION_SPEC;
pub const FLOW_SPEC: FrameSpec = MOTION_SPEC;
pub const COLOR_SPEC: FrameSpec = MOTION_SPEC;

/// Longest side for `content_quality`: full resolution up to 1080x1920, because blockiness and
/// noise live at the coded pixel grid.
pub const QUALITY_MAX_SIDE: u32 = 1920;
/// About this many frames are enough for stable quality statistics.
pub const QUALITY_TARGET_FRAMES: f64 = 12.0;
/// `content_quality` on a typical short video: one frame every two seconds at full size.
pub const QUALITY_SPEC: FrameSpec = FrameSpec::at_fps(500, QUALITY_MAX_SIDE);

/// `content_quality`'s spec for a video of `duration_s`: about [`QUALITY_TARGET_FRAMES`]
/// frames (between 0.05 and 1 fps), so a long video does not hold hundreds of full frames.
pub fn quality_spec(duration_s: f64) -> FrameSpec {
    let fps = (QUALITY_TARGET_FRAMES / duration_s.max(1.0)).clamp(0.05, 1.0);
    // Round to steps of 50 mHz so nearby durations share a decode cache key.
    let milli = ((fps * 1000.0 / 50.0).round() as u32 * 50).max(50);
    FrameSpec::at_fps(milli, QUALITY_MAX_SIDE)
}
