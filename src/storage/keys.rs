//! The storage layout, identical on every backend (see ARCHITECTURE.md).

/// `jobs/<id>/job.json`
pub fn job_spec(job: &str) -> String {
    format!("jobs/{job}/job.json")
}

/// `jobs/<id>/attempts/<index>/<attempt>.<ext>`: the segment written by one attempt.
pub fn attempt_segment(job: &str, chunk: u32, attempt: u32, ext: &str) -> String {
    format!("jobs/{job}/attempts/{chunk}/{attempt}.{ext}")
}

/// `jobs/<id>/attempts/<index>/<attempt>/`: the image files written by one attempt (an
/// image sequence's or a still's), each under its output file name.
pub fn attempt_files(job: &str, chunk: u32, attempt: u32) -> String {
    format!("jobs/{job}/attempts/{chunk}/{attempt}")
}

/// `jobs/<id>/frames/<name>`: an image of a finished image sequence, placed in storage.
pub fn frame_file(job: &str, name: &str) -> String {
    format!("jobs/{job}/frames/{name}")
}

/// `jobs/<id>/frames/`: every placed image of an image sequence.
pub fn frames(job: &str) -> String {
    format!("jobs/{job}/frames")
}

/// `jobs/<id>/palette.png`: a GIF job's palette, made once before its chunks render.
pub fn palette(job: &str) -> String {
    format!("jobs/{job}/palette.png")
}

/// `jobs/<id>/palette/<attempt>.png`: the palette one attempt of the palette task wrote.
pub fn palette_attempt(job: &str, attempt: u32) -> String {
    format!("jobs/{job}/palette/{attempt}.png")
}

/// `jobs/<id>/attempts/<index>/<attempt>.json`: that attempt's report.
pub fn attempt_report(job: &str, chunk: u32, attempt: u32) -> String {
    format!("jobs/{job}/attempts/{chunk}/{attempt}.json")
}

/// `jobs/<id>/attempts/<index>/<attempt>.error.json`: why that attempt failed, written by
/// batch workers (Cloud Run Jobs tasks), whose answer has no other way back.
pub fn attempt_error(job: &str, chunk: u32, attempt: u32) -> String {
    format!("jobs/{job}/attempts/{chunk}/{attempt}.error.json")
}

/// `jobs/<id>/attempts/`: every attempt of every chunk.
pub fn attempts(job: &str) -> String {
    format!("jobs/{job}/attempts")
}

/// The job id of a `…/jobs/<id>/job.json` key.
pub fn job_of_spec_key(key: &str) -> Option<&str> {
    key.strip_prefix("jobs/")?.strip_suffix("/job.json")
}

/// `jobs/<id>/attempts/<index>/`: every attempt of a chunk.
pub fn chunk_attempts(job: &str, chunk: u32) -> String {
    format!("jobs/{job}/attempts/{chunk}")
}

/// `jobs/<id>/output.<ext>`: the stitched output.
pub fn output(job: &str, ext: &str) -> String {
    format!("jobs/{job}/output.{ext}")
}

/// `bundles/<sha256>.tar.zst`: a content-addressed composition bundle.
pub fn bundle(sha256: &str) -> String {
    format!("bundles/{sha256}.tar.zst")
}

/// `jobs/<id>/assembly/<index>.json`: what assembly task `index` joins (in-bucket stitching).
pub fn assembly_task(job: &str, index: u32) -> String {
    format!("jobs/{job}/assembly/{index}.json")
}

/// `jobs/<id>/assembly/<index>/<attempt>.part`: the part an assembly task wrote.
pub fn assembly_part(job: &str, index: u32, attempt: u32) -> String {
    format!("jobs/{job}/assembly/{index}/{attempt}.part")
}

/// `jobs/<id>/assembly/<name>`: a piece the orchestrator itself wrote (the init, the tail).
pub fn assembly_piece(job: &str, name: &str) -> String {
    format!("jobs/{job}/assembly/{name}")
}

/// `jobs/<id>/assembly/`: everything in-bucket stitching wrote besides the output.
pub fn assembly(job: &str) -> String {
    format!("jobs/{job}/assembly")
}
