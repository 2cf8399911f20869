//! The command renderer: an external program renders a frame range to a file.

use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use tokio::process::Command;

use super::{encoder, RenderError, RenderRequest, RenderedSegment, Renderer};
use crate::media;
use crate::process;
use crate::spec::{Chunk, CommandComposition, JobSpec};

/// Runs `argv` once per chunk with placeholders substituted; never through a shell.
#[derive(Debug, Clone)]
pub struct CommandRenderer {
    composition: CommandComposition,
}

impl CommandRenderer {
    /// A renderer for this composition.
    pub fn new(composition: CommandComposition) -> Self {
        Self { composition }
    }
}

/// Substitutes placeholders in one argument. Unknown names are left as they are
/// (validation has rejected them already); `{{`/`}}` become literal braces.
pub fn substitute(arg: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let (true, Some(end)) = (tail.starts_with('{'), tail.find('}')) {
            let name = &tail[1..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => out.push_str(&tail[..=end]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Each placeholder of a chunk, the variable that carries it too, and its value (`bundle`
/// only when the job has one).
fn chunk_values(
    spec: &JobSpec,
    chunk: Chunk,
    output: &Path,
    bundle: Option<&Path>,
) -> Vec<(&'static str, &'static str, String)> {
    let v = &spec.video;
    let mut values = vec![
        ("start", "HELIOS_FRAME_START", chunk.start.to_string()),
        ("end", "HELIOS_FRAME_END", chunk.end.to_string()),
        ("count", "HELIOS_FRAME_COUNT", chunk.len().to_string()),
        ("output", "HELIOS_OUTPUT", output.display().to_string()),
        ("width", "HELIOS_WIDTH", v.width.to_string()),
        ("height", "HELIOS_HEIGHT", v.height.to_string()),
        ("fps", "HELIOS_FPS", v.fps.to_string()),
    ];
    if let Some(b) = bundle {
        values.push(("bundle", "HELIOS_BUNDLE", b.display().to_string()));
    }
    values
}

/// The argument vector for one chunk.
pub fn chunk_argv(
    argv: &[String],
    spec: &JobSpec,
    chunk: Chunk,
    output: &Path,
    bundle: Option<&Path>,
) -> Vec<String> {
    let values = chunk_values(spec, chunk, output, bundle);
    let lookup = |name: &str| {
        values
            .iter()
            .find(|(placeholder, _, _)| *placeholder == name)
            .map(|(_, _, value)| value.clone())
    };
    argv.iter().map(|a| substitute(a, lookup)).collect()
}

#[async_trait]
impl Renderer for CommandRenderer {
    async fn render(&self, req: &RenderRequest<'_>) -> Result<RenderedSegment, RenderError> {
        let raw = req.workdir.join("render.mkv");
        let argv = chunk_argv(
            &self.composition.argv,
            req.spec,
            req.chunk,
            &raw,
            req.bundle_dir,
        );
        let program = argv[0].clone();
        tracing::debug!(?argv, chunk = req.chunk.index, "running renderer");

        let started = Instant::now();
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..])
            .current_dir(req.bundle_dir.unwrap_or(req.workdir));
        process::clean_env(&mut cmd, req.workdir);
        // The placeholders, also as variables, for renderers that prefer to read them there.
        for (_, name, value) in chunk_values(req.spec, req.chunk, &raw, req.bundle_dir) {
            cmd.env(name, value);
        }
        // What the job asked for by name, from this worker's environment.
        for name in &self.composition.pass_env {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        let done = process::run(&mut cmd)
            .await
            .map_err(|source| RenderError::ProgramNotFound {
                program: program.clone(),
                source,
            })?;
        if !done.status.success() {
            return Err(RenderError::ProgramFailed {
                program,
                status: process::describe_status(&done.status),
                stderr: done.stderr.text(),
            });
        }
        let render_time = started.elapsed();
        if !raw.exists() {
            return Err(RenderError::BadOutput(format!(
                "renderer {program:?} exited successfully but wrote nothing to {{output}} ({})",
                raw.display()
            )));
        }

        let started = Instant::now();
        let segment = encoder::chunk_output(req.workdir, req.spec);
        encoder::normalize(&raw, &segment, req.spec, req.chunk)
            .await
            .map_err(|e| match e {
                media::MediaError::Failed { stderr, .. } => RenderError::BadOutput(format!(
                    "FFmpeg cannot read what renderer {program:?} wrote to {{output}}:\n{stderr}"
                )),
                other => other.into(),
            })?;
        let artifact = encoder::finish(req.spec, req.chunk, &segment)
            .await
            .map_err(|e| match e {
                RenderError::BadOutput(why) => RenderError::BadOutput(format!(
                    "renderer {program:?}: {why}; does it honour {{width}}, {{height}}, {{start}} and {{end}}?"
                )),
                other => other,
            })?;
        let _ = tokio::fs::remove_file(&raw).await;
        Ok(RenderedSegment {
            path: segment,
            frames: artifact.frames(),
            artifact,
            render_time,
            encode_time: started.elapsed(),
            stats: Default::default(),
            stages: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_inside_arguments_without_a_shell() {
        let l = |n: &str| (n == "start").then(|| "10".to_string());
        assert_eq!(
            substitute("trim=start_frame={start}", l),
            "trim=start_frame=10"
        );
        assert_eq!(substitute("{{start}}", l), "{start}");
        assert_eq!(substitute("$(rm -rf /) {start}", l), "$(rm -rf /) 10");
        assert_eq!(substitute("{nope}", l), "{nope}");
    }
}
