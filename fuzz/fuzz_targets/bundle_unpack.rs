//! Unpacking arbitrary archives never panics and never writes outside the destination.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile_dir() else { return };
    let _ = helios_infra::storage::unpack(data, &dir);
    let _ = std::fs::remove_dir_all(&dir);
});

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("helios-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
