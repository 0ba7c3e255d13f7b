//! Test fixtures: the seed's 22 active analyzers as a config, independent of config/fleet.toml
//! (whose numbers may be tuned) so the expected figures below stay exact.

use common::config::FleetConfig;

/// (name, stage, seconds, GPU GB, needs, uses).
type Row = (
    &'static str,
    &'static str,
    f64,
    f64,
    &'static [&'static str],
    &'static [&'static str],
);

/// The seed's groups as config/fleet.toml has them.
pub const SEED: &[Row] = &[
    ("qwen2_vl_temporal", "stage1", 110.0, 16.0, &[], &[]),
    ("product_detection", "stage1", 50.4, 2.0, &[], &[]),
    ("object_detection", "stage1", 50.3, 3.0, &[], &[]),
    ("visual_effects", "stage1", 22.5, 1.0, &[], &[]),
    ("camera_analysis", "stage2", 36.1, 1.0, &[], &[]),
    ("text_overlay", "stage2", 37.1, 2.0, &[], &[]),
    ("background_segmentation", "stage2", 41.2, 3.0, &[], &[]),
    ("color_analysis", "stage3", 16.4, 0.5, &[], &[]),
    ("content_quality", "stage3", 11.7, 1.0, &[], &[]),
    ("eye_tracking", "stage3", 10.4, 0.5, &[], &[]),
    ("scene_segmentation", "stage3", 10.6, 0.5, &[], &[]),
    ("cut_analysis", "stage4", 4.1, 0.2, &[], &[]),
    ("age_estimation", "stage4", 1.1, 0.5, &[], &[]),
    (
        "speech_rate",
        "cpu",
        14.1,
        0.0,
        &[],
        &["speech_transcription"],
    ),
    ("speech_transcription", "cpu", 4.5, 0.0, &[], &[]),
    ("sound_effects", "cpu", 5.9, 0.0, &[], &[]),
    ("speech_emotion", "cpu", 1.6, 0.0, &[], &[]),
    (
        "speech_flow",
        "cpu",
        1.0,
        0.0,
        &[],
        &["speech_transcription"],
    ),
    (
        "comment_cta_detection",
        "cpu",
        1.0,
        0.0,
        &[],
        &["speech_transcription", "text_overlay"],
    ),
    ("audio_environment", "cpu", 0.5, 0.0, &[], &[]),
    (
        "temporal_flow",
        "cpu",
        2.1,
        0.0,
        &["cut_analysis"],
        &["speech_transcription"],
    ),
    ("audio_analysis", "cpu", 0.2, 0.0, &[], &[]),
];

/// The seed as fleet.toml text (stage limits 2/3/4/4/8, critical 40GB, one disabled analyzer).
pub fn seed_toml() -> String {
    let mut t = String::from(
        "# seed fixture\n[gpu]\nmemory_total_gb = 44.5\nwarning = \"35GB\"\ncritical = \"40GB\"    # the budget\n\n",
    );
    for (s, c, class) in [
        ("stage1", 2, "gpu"),
        ("stage2", 3, "gpu"),
        ("stage3", 4, "gpu"),
        ("stage4", 4, "gpu"),
        ("cpu", 8, "cpu"),
    ] {
        t += &format!("[stages.{s}]\nclass = \"{class}\"\nconcurrency = {c}\n");
    }
    for (name, stage, secs, mem, needs, uses) in SEED {
        t += &format!(
            "\n[analyzers.{name}]\nstage = \"{stage}\"\nexpected_secs = {secs:?}\ngpu_memory_gb = {mem:?}\nneeds = {needs:?}\nuses = {uses:?}\n"
        );
    }
    t += "\n# disabled: ignored by the planner\n[analyzers.video_llava]\nstage = \"stage1\"\nexpected_secs = 60.0\ngpu_memory_gb = 14.0\nenabled = false\n";
    t
}

pub fn seed_config() -> FleetConfig {
    FleetConfig::parse(&seed_toml(), "seed fixture", |_| None).expect("fixture parses")
}

/// The shipped config/fleet.toml (only structural checks use it).
pub fn shipped_toml() -> &'static str {
    include_str!("../../config/fleet.toml")
}
