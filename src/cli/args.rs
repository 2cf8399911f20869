//! Command-line definitions (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::adapter::AdapterArgs;
use crate::spec::{Codec, Fps};

/// Distributed rendering for programmatic video: render in frame-range chunks on many
/// workers, get one file identical to a one-piece render.
#[derive(Debug, Parser)]
#[command(name = "helios-infra", version, about, propagate_version = true)]
pub struct Cli {
    /// State directory: the job store (jobs.db), locks, temporary files, and the default storage.
    #[arg(long, global = true, env = "HELIOS_HOME", default_value = ".helios")]
    pub home: PathBuf,
    /// Storage root for specs, bundles and segments (file:///dir or a directory; default <home>/storage).
    #[arg(long, global = true, env = "HELIOS_STORAGE")]
    pub storage: Option<String>,
    /// Print progress and results as JSON lines on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Key signing webhook notifications (HMAC-SHA256 in X-Helios-Signature).
    #[arg(
        long,
        global = true,
        env = "HELIOS_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan, render and stitch a video in one go.
    Render(RenderArgs),
    /// Plan a job and write its spec without running it.
    Plan(PlanArgs),
    /// Render one composition once per row of props (JSON Lines or CSV): one job per row,
    /// all sharing one bundle upload, one adapter and one concurrency limit.
    Batch(BatchArgs),
    /// Run a job spec written by `plan --emit` (or by hand).
    Run(RunArgs),
    /// Show jobs, or one job's chunks.
    Status(StatusArgs),
    /// Continue a failed, cancelled or interrupted job: only unfinished chunks are rendered.
    Resume(ResumeArgs),
    /// Cancel a running job; finished chunks are kept and `resume` continues it.
    Cancel(JobArg),
    /// Concatenate segments (same codec parameters) into one file without re-encoding.
    Stitch(StitchArgs),
    /// Render one frame as an image (.png, .jpg or .webp): the poster of a composition.
    Still(StillArgs),
    /// Create or update, idempotently, the cloud resources workers need (a second run that
    /// finds them as wanted changes nothing), then print the `render` flags that use them.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Remove what `deploy` made.
    #[command(subcommand)]
    Destroy(DestroyCommand),
    /// Check everything a render needs, each check passing or saying what to fix:
    /// credentials and whose they are, the storage (a test object written, read and
    /// removed), the adapter's workers (a Lambda function's state and settings) and a ping
    /// answered by a worker. Exit 0 only when every check passes.
    Doctor(DoctorArgs),
    /// Serve a web dashboard of the job store: jobs, live progress, each chunk's attempts
    /// on a timeline, errors, output, cancel and resume.
    Ui(UiArgs),
    /// Worker entry points.
    #[command(subcommand)]
    Worker(WorkerCommand),
}

/// What to render and how (shared by `render` and `plan`).
#[derive(Debug, Clone, Args)]
pub struct PlanSettings {
    /// An HTML composition (folder with index.html, or an .html file). Omit when a command follows `--`.
    pub composition: Option<PathBuf>,
    /// Frame rate: 30, 30000/1001 or 29.97 [default: a Helios composition's own, else 30].
    #[arg(long)]
    pub fps: Option<Fps>,
    /// Output size, WIDTHxHEIGHT [default: a Helios composition's own, else 1280x720].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Frames to render, START..END (END exclusive) or a count [default: a Helios
    /// composition's whole duration].
    #[arg(long, value_parser = parse_frames, conflicts_with = "duration")]
    pub frames: Option<(u64, u64)>,
    /// Seconds to render from frame 0 (instead of --frames).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Input props for the composition: a JSON object, or @FILE holding one. Merged over
    /// the composition's own props; a Helios composition's schema validates them.
    #[arg(long, value_name = "JSON|@FILE")]
    pub props: Option<String>,
    /// Number of chunks (balanced). Without it (or --frames-per-chunk), a render on local
    /// workers keeps the estimate's probe as an extra first chunk of 30 frames.
    #[arg(long, conflicts_with = "frames_per_chunk")]
    pub chunks: Option<u32>,
    /// Maximum frames per chunk.
    #[arg(long)]
    pub frames_per_chunk: Option<u64>,
    /// Chunks rendering at once (default: the number of CPU cores).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Bit-exact segments (lossless encoding).
    #[arg(long)]
    pub lossless: bool,
    /// Video codec: h264, h265, vp9, av1, prores, ffv1 [default: vp9 for .webm, prores for
    /// a transparent .mov, else h264].
    #[arg(long)]
    pub codec: Option<Codec>,
    /// Quality for lossy codecs (lower is better).
    #[arg(long)]
    pub crf: Option<u32>,
    /// Encoder preset (e.g. ultrafast … veryslow for h264/h265).
    #[arg(long)]
    pub preset: Option<String>,
    /// Pixel format (default yuv420p; yuv422p10le for prores; with --transparent
    /// yuva444p10le for prores, yuva420p for vp9).
    #[arg(long)]
    pub pix_fmt: Option<String>,
    /// Transparent output: the page's default background is transparent and frames keep
    /// their alpha channel. Needs an output that carries alpha: .mov (ProRes 4444), .webm
    /// (VP9), .png or .webp images.
    #[arg(long)]
    pub transparent: bool,
    /// Quality of .jpg and .webp images, 1-100 [default: 90; 100 = lossless WebP].
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub quality: Option<u32>,
    /// GIF: how many times it loops, 0 = forever [default: forever].
    #[arg(long = "loop", value_name = "N", conflicts_with = "no_loop")]
    pub loop_count: Option<u32>,
    /// GIF: play once, no loop.
    #[arg(long)]
    pub no_loop: bool,
    /// Retries per chunk after the first attempt, for retryable failures.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Seconds one attempt may take before it is killed and retried.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// An audio track: FILE (or URL, or a path inside --bundle) starting at FRAME (default 0).
    /// Repeatable; tracks are mixed once for the whole timeline.
    #[arg(long = "audio", value_name = "FILE[@FRAME]", value_parser = parse_audio)]
    pub audio: Vec<(String, u64)>,
    /// HTML compositions: capture this <canvas> (CSS selector, e.g. `canvas`) by read-back
    /// instead of screenshots of the page — faster when the canvas is the whole picture.
    #[arg(long, value_name = "SELECTOR")]
    pub capture_canvas: Option<String>,
    /// HTML compositions: browser processes per worker, sharing each chunk (contiguous
    /// blocks merged in order into one encoder). Default: chosen by each worker from its cores.
    #[arg(long, value_name = "N")]
    pub browsers: Option<u32>,
    /// Notify this URL (JSON POST, signed with --webhook-secret) when the job ends.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Do not add the sound of the composition's <audio>/<video> elements (found by loading
    /// the page once at plan time; Helios' data-helios-offset/seek/fade-in/fade-out honoured).
    #[arg(long)]
    pub no_media_audio: bool,
    /// A folder packed into the job's bundle; a command sees it as {bundle} (and runs in it).
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Variables the renderer command takes from each worker's environment (names only,
    /// comma-separated or repeated); by default it gets a clean environment.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub pass_env: Vec<String>,
    /// Renderer command, after `--`: an argument vector with placeholders {start} {end}
    /// {count} {output} {width} {height} {fps} {bundle}; never run through a shell.
    #[arg(last = true)]
    pub argv: Vec<String>,
    /// Remote resources and fonts of HTML compositions.
    #[command(flatten)]
    pub inputs: PageInputs,
    /// Planning a still (`still`): a page that declares no duration has any frame.
    #[arg(skip)]
    pub still: bool,
}

impl StillArgs {
    /// The plan settings of a still: one frame, no audio.
    pub fn plan_settings(&self) -> PlanSettings {
        PlanSettings {
            composition: Some(self.composition.clone()),
            fps: self.fps,
            size: self.size,
            frames: None,
            duration: None,
            props: self.props.clone(),
            chunks: None,
            frames_per_chunk: None,
            concurrency: Some(1),
            lossless: false,
            codec: None,
            crf: None,
            preset: None,
            pix_fmt: None,
            transparent: self.transparent,
            quality: self.quality,
            loop_count: None,
            no_loop: false,
            retries: self.retries,
            timeout: self.timeout,
            audio: Vec::new(),
            capture_canvas: self.capture_canvas.clone(),
            browsers: Some(1),
            webhook: None,
            no_media_audio: true,
            bundle: None,
            pass_env: Vec::new(),
            argv: Vec::new(),
            inputs: self.inputs.clone(),
            still: true,
        }
    }
}

/// What an HTML composition may load from elsewhere, and how its fonts are held to the
/// plan (shared by `render`, `plan`, `batch` and `still`).
#[derive(Debug, Clone, Args)]
pub struct PageInputs {
    /// HTML compositions: do not vendor remote resources; every worker fetches what the
    /// page loads from its origin itself (more requests, and not necessarily the same bytes).
    #[arg(long, conflicts_with = "allow_network")]
    pub no_vendor: bool,
    /// HTML compositions: let a worker's page load remote resources that were not vendored
    /// at plan time (by default such a request fails the chunk).
    #[arg(long)]
    pub allow_network: bool,
    /// Largest remote resource vendored at plan time, in MB.
    #[arg(long, value_name = "MB", default_value_t = 200)]
    pub max_asset_mb: u64,
    /// HTML compositions: refuse to render when a font family the text asks for is not
    /// available and another font would be used (by default a warning).
    #[arg(long)]
    pub strict_fonts: bool,
}

/// `render`
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Output file; its extension picks the container (mp4, mov, mkv, webm). With
    /// --no-download it only names the container (default .mp4).
    #[arg(short, long, required_unless_present = "no_download")]
    pub output: Option<PathBuf>,
    /// Leave the output in storage (`<storage>/jobs/<id>/output.<ext>`) and print where it
    /// is (a presigned URL for S3) instead of copying it to -o.
    #[arg(long)]
    pub no_download: bool,
    /// How segments are joined: `auto` joins fragmented MP4 by bytes where the output
    /// allows it (.mp4/.m4v, lossy H.264/H.265/VP9) and uses FFmpeg's concat demuxer
    /// elsewhere; `concat` always uses the concat demuxer.
    #[arg(long, value_enum, default_value_t = StitchMode::Auto)]
    pub stitch: StitchMode,
    /// Where chunks run.
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Cost cap and estimate.
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// What to render.
    #[command(flatten)]
    pub plan: PlanSettings,
}

/// The output path of `render`/`run`: `-o`, or a name for the container when the output
/// stays in storage.
pub fn output_or_default(output: &Option<PathBuf>) -> PathBuf {
    output
        .clone()
        .unwrap_or_else(|| PathBuf::from("output.mp4"))
}

/// `--stitch`
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StitchMode {
    /// Byte join where the output allows it, concat elsewhere.
    Auto,
    /// FFmpeg's concat demuxer, whatever the output.
    Concat,
}

impl StitchMode {
    /// The segment format for `output`.
    pub fn segments(
        self,
        output: &std::path::Path,
        video: &crate::spec::VideoSpec,
    ) -> crate::spec::SegmentFormat {
        match self {
            StitchMode::Auto => crate::spec::SegmentFormat::for_output(output, video),
            StitchMode::Concat => crate::spec::SegmentFormat::File,
        }
    }
}

/// `plan`
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where to write the job spec (`-` for stdout).
    #[arg(long)]
    pub emit: PathBuf,
    /// The output the job is planned for: its name decides what is written (a video by
    /// its container, .gif, or an image sequence such as frames/%05d.png) [default: a video].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Where the job would run (for its estimate).
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Cost cap and estimate.
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// What to render.
    #[command(flatten)]
    pub plan: PlanSettings,
}

/// `batch`
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Rows of props: JSON Lines (one object per line) or CSV (a header row of prop names;
    /// values typed by the composition's schema when it has one; no comment lines).
    #[arg(long, value_name = "ROWS")]
    pub props_file: PathBuf,
    /// Output path of each row: `{row}` (1-based row number) and `{PROP}` (a scalar prop of
    /// the row, written as JSON would: `12`, not `12.0`), e.g. 'out/{row}-{name}.mp4'.
    #[arg(short, long, value_name = "PATTERN")]
    pub output: String,
    /// Leave each output in storage and print where it is (see `render --no-download`).
    #[arg(long)]
    pub no_download: bool,
    /// How segments are joined (see `render --stitch`).
    #[arg(long, value_enum, default_value_t = StitchMode::Auto)]
    pub stitch: StitchMode,
    /// Stills: render this frame of each row as one image (-o 'thumbs/{row}.png').
    #[arg(long, value_name = "N", conflicts_with = "time")]
    pub frame: Option<u64>,
    /// Stills: render the frame shown at this time (seconds) of each row.
    #[arg(long, value_name = "SECONDS")]
    pub time: Option<f64>,
    /// Where chunks run.
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Cost cap (for the whole batch) and estimate.
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// What to render (`--props` gives props every row starts from).
    #[command(flatten)]
    pub plan: PlanSettings,
}

/// `still`
#[derive(Debug, Args)]
pub struct StillArgs {
    /// An HTML composition (folder with index.html, or an .html file).
    pub composition: PathBuf,
    /// The image: .png (lossless), .jpg/.jpeg or .webp, by extension. With --no-download it
    /// only names the format.
    #[arg(short, long, required_unless_present = "no_download")]
    pub output: Option<PathBuf>,
    /// The frame to render, from 0 [default: 0].
    #[arg(long, value_name = "N", conflicts_with = "time")]
    pub frame: Option<u64>,
    /// The time to render, in seconds: the frame shown at that time.
    #[arg(long, value_name = "SECONDS")]
    pub time: Option<f64>,
    /// Input props (a JSON object, or @FILE), as for `render`.
    #[arg(long, value_name = "JSON|@FILE")]
    pub props: Option<String>,
    /// Image size, WIDTHxHEIGHT [default: the composition's own, else 1280x720].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Frame rate the frame number counts in [default: the composition's own, else 30].
    #[arg(long)]
    pub fps: Option<Fps>,
    /// Transparent background, kept as alpha (.png and .webp).
    #[arg(long)]
    pub transparent: bool,
    /// Quality of .jpg and .webp images, 1-100 [default: 90].
    #[arg(long, value_name = "Q", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub quality: Option<u32>,
    /// Capture this <canvas> by read-back (see `render --capture-canvas`).
    #[arg(long, value_name = "SELECTOR")]
    pub capture_canvas: Option<String>,
    /// Remote resources and fonts (see `render`).
    #[command(flatten)]
    pub inputs: PageInputs,
    /// Leave the image in storage (`<storage>/jobs/<id>/output.<ext>`) and print where it is.
    #[arg(long)]
    pub no_download: bool,
    /// Retries after the first attempt, for retryable failures.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Seconds the attempt may take before it is killed and retried.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Where the frame renders.
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

/// The frame of `still` and `batch --frame/--time`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StillFrame {
    /// A frame index.
    Frame(u64),
    /// A time in seconds.
    Time(f64),
}

impl StillFrame {
    /// From `--frame` / `--time`; frame 0 when neither is given.
    pub fn new(frame: Option<u64>, time: Option<f64>) -> Self {
        match (frame, time) {
            (_, Some(t)) => StillFrame::Time(t),
            (Some(f), None) => StillFrame::Frame(f),
            (None, None) => StillFrame::Frame(0),
        }
    }
}

/// `run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job spec (JSON): one `plan --emit` wrote, or a Helios job file
    /// (`helios render --emit-job`).
    pub spec: PathBuf,
    /// Output file (with --no-download it only names the container).
    #[arg(short, long, required_unless_present = "no_download")]
    pub output: Option<PathBuf>,
    /// Leave the output in storage and print where it is (see `render --no-download`).
    #[arg(long)]
    pub no_download: bool,
    /// Override the spec's concurrency.
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// For a Helios job file: run each chunk's own `helios render …` command as a renderer
    /// command instead of mapping it onto helios-infra's browser renderer.
    #[arg(long)]
    pub chunk_commands: bool,
    /// How segments are joined (see `render --stitch`).
    #[arg(long, value_enum, default_value_t = StitchMode::Auto)]
    pub stitch: StitchMode,
    /// Where chunks run.
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Cost cap and estimate.
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// `resume`
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Job id (see `helios-infra status`).
    pub id: String,
    /// Where chunks run (default: where the job ran before).
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// Cost cap and estimate.
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// What a render may cost, and how its cost is estimated (`render`, `batch`, `run`,
/// `resume`, `plan`).
#[derive(Debug, Clone, Default, Args)]
pub struct BudgetArgs {
    /// Hard cost cap in USD for the job (a batch: for all its rows together): no worker task
    /// starts whose expected cost would take the spend over it; tasks already running
    /// finish and the job stops as `stopped` (reason `budget`), resumable with a higher cap.
    /// With `resume` it replaces the cap the job had.
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Start even when the estimate is over --max-cost (the cap still stops the job).
    #[arg(long)]
    pub start_anyway: bool,
    /// Render time of one frame on a worker, in milliseconds, for the estimate (instead of
    /// a probe that renders a few frames on this machine).
    #[arg(long, value_name = "MS")]
    pub frame_ms: Option<f64>,
    /// Do not probe the composition for the estimate (it then assumes 100 ms a frame
    /// unless --frame-ms says otherwise).
    #[arg(long)]
    pub no_probe: bool,
}

/// `deploy`
#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// AWS: a bucket, the workers' role (trusted by Lambda, with an inline policy scoped to
    /// the bucket's prefix) and the Lambda function running `worker lambda` from the image.
    Aws(DeployAwsArgs),
    /// Google Cloud: the workers' service account, the bucket with roles/storage.objectUser
    /// for the workers and the orchestrator, the Cloud Run service (`worker serve`), the
    /// Cloud Run Job (`worker run`), and the orchestrator's invoker bindings on both.
    Gcp(DeployGcpArgs),
    /// Kubernetes: the namespace and the orchestrator's ServiceAccount, Role and
    /// RoleBinding (as docs/deploy-kubernetes.md shows them), applied server-side.
    Kubernetes(DeployKubernetesArgs),
}

/// `deploy kubernetes`
#[derive(Debug, Args)]
pub struct DeployKubernetesArgs {
    /// Namespace of the render Jobs (created if missing).
    #[arg(long)]
    pub namespace: String,
    /// The worker image (for the printed `render` flags).
    #[arg(long)]
    pub image: Option<String>,
    /// kubeconfig context (default: the current one, or the in-cluster service account).
    #[arg(long)]
    pub k8s_context: Option<String>,
    /// Say what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `deploy aws`
#[derive(Debug, Args)]
pub struct DeployAwsArgs {
    /// Bucket for specs, bundles, segments and outputs (created if missing).
    #[arg(long)]
    pub bucket: String,
    /// Container image URI (ECR) built from this repository's Dockerfile.
    #[arg(long)]
    pub image: String,
    /// Key prefix under the bucket; the workers' policy covers only it.
    #[arg(long, default_value = "helios")]
    pub prefix: String,
    /// Function name.
    #[arg(long, default_value = "helios-worker")]
    pub function: String,
    /// Role name of the workers.
    #[arg(long, default_value = "helios-worker")]
    pub role: String,
    /// Memory of the function in MB (Lambda gives CPU in proportion: 1 vCPU per ~1,769 MB).
    #[arg(long, default_value_t = 4096)]
    pub memory: i32,
    /// Timeout of the function in seconds (at most 900).
    #[arg(long, default_value_t = 900)]
    pub timeout: i32,
    /// Space in /tmp in MB.
    #[arg(long, default_value_t = 4096)]
    pub ephemeral_storage: i32,
    /// Region (default: AWS_REGION / the AWS config).
    #[arg(long)]
    pub region: Option<String>,
    /// Reserve this many concurrent executions for the function.
    #[arg(long)]
    pub concurrency: Option<i32>,
    /// Print every resource and policy document and what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `deploy gcp`
#[derive(Debug, Args)]
pub struct DeployGcpArgs {
    /// Project id.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    pub project: String,
    /// Region of the service and the job (and of the bucket when it is created).
    #[arg(long)]
    pub region: String,
    /// Container image (Artifact Registry) built from this repository's Dockerfile.
    #[arg(long)]
    pub image: String,
    /// Bucket for specs, bundles, segments and outputs (created if missing).
    #[arg(long)]
    pub bucket: String,
    /// Object prefix under the bucket, for the printed `--storage`.
    #[arg(long, default_value = "helios")]
    pub prefix: String,
    /// Cloud Run service (for --adapter cloudrun).
    #[arg(long, default_value = "helios-worker")]
    pub service: String,
    /// Cloud Run Job (for --adapter cloudrun-job).
    #[arg(long, default_value = "helios-render")]
    pub job: String,
    /// CPUs of an instance or task.
    #[arg(long, default_value = "2")]
    pub cpu: String,
    /// Memory of an instance or task.
    #[arg(long, default_value = "4Gi")]
    pub memory: String,
    /// Request timeout of the service and task timeout of the job, in seconds (at most 3600).
    #[arg(long, default_value_t = 3600)]
    pub timeout: i32,
    /// Most instances of the service, and most parallel tasks of the job.
    #[arg(long)]
    pub max_instances: Option<i32>,
    /// The identity that renders (serviceAccount:EMAIL or user:EMAIL): it gets
    /// roles/run.invoker on the service, roles/run.developer on the job and
    /// roles/storage.objectUser on the bucket. Default: the account of these credentials.
    #[arg(long)]
    pub invoker: Option<String>,
    /// Cloud Run Admin API endpoint (default https://run.googleapis.com).
    #[arg(long, env = "CLOUD_RUN_ENDPOINT")]
    pub cloud_run_endpoint: Option<String>,
    /// IAM API endpoint (default https://iam.googleapis.com).
    #[arg(long, env = "HELIOS_IAM_ENDPOINT", hide = true)]
    pub iam_endpoint: Option<String>,
    /// Print every resource and document and what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `destroy`
#[derive(Debug, Subcommand)]
pub enum DestroyCommand {
    /// AWS: the function, then the role and its policy; the bucket only with
    /// --delete-bucket.
    Aws(DestroyAwsArgs),
}

/// `destroy aws`
#[derive(Debug, Args)]
pub struct DestroyAwsArgs {
    /// Function name.
    #[arg(long, default_value = "helios-worker")]
    pub function: String,
    /// Role name of the workers.
    #[arg(long, default_value = "helios-worker")]
    pub role: String,
    /// The deployment's bucket (kept unless --delete-bucket).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Delete the bucket too; refused when it holds objects, unless --force.
    #[arg(long, requires = "bucket")]
    pub delete_bucket: bool,
    /// With --delete-bucket: delete every object in it first.
    #[arg(long, requires = "delete_bucket")]
    pub force: bool,
    /// Region (default: AWS_REGION / the AWS config).
    #[arg(long)]
    pub region: Option<String>,
}

/// `doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The adapter to check, with the flags `render` would get.
    #[command(flatten)]
    pub adapter: AdapterArgs,
}

/// `status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A job id; without it, every job is listed.
    pub id: Option<String>,
}

/// `ui`
#[derive(Debug, Args)]
pub struct UiArgs {
    /// Address to listen on. Off loopback, --token is required.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub listen: std::net::SocketAddr,
    /// Token every request must carry (`Authorization: Bearer T`, or open the dashboard
    /// once with `?token=T`, which sets a cookie).
    #[arg(long, env = "HELIOS_UI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// A job id argument.
#[derive(Debug, Args)]
pub struct JobArg {
    /// Job id (see `helios-infra status`).
    pub id: String,
}

/// `stitch`
#[derive(Debug, Args)]
pub struct StitchArgs {
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Segments, in order.
    #[arg(required = true)]
    pub segments: Vec<PathBuf>,
}

/// `worker …`
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Render one chunk attempt and print its report (or error) as JSON.
    ///
    /// In batch engines the chunk comes from the task index: Cloud Run Jobs
    /// (`CLOUD_RUN_TASK_INDEX`, attempt from `CLOUD_RUN_TASK_ATTEMPT`) and Kubernetes Indexed
    /// Jobs (`JOB_COMPLETION_INDEX`), with the job URL in `HELIOS_JOB_URL`.
    Run {
        /// Storage URL of the job's job.json.
        #[arg(long, env = "HELIOS_JOB_URL", required_unless_present = "ping")]
        job: Option<String>,
        /// Chunk index (default: the batch engine's task index).
        #[arg(long)]
        chunk: Option<u32>,
        /// Attempt number, from 1 (names the attempt's storage keys).
        #[arg(long)]
        attempt: Option<u32>,
        /// Run the assembly task numbered --chunk (a part of an output joined inside the
        /// bucket) instead of rendering a chunk.
        #[arg(long)]
        assemble: bool,
        /// Run the palette task of a GIF job (render a sample of its frames, compute the
        /// palette every chunk draws with) instead of rendering a chunk.
        #[arg(long, conflicts_with = "assemble")]
        palette: bool,
        /// Answer a ping: print this worker's versions and capabilities (helios-infra,
        /// Chromium, FFmpeg and its encoders, fonts, free temporary space) and exit.
        #[arg(long, conflicts_with_all = ["assemble", "palette"])]
        ping: bool,
    },
    /// Run as an AWS Lambda function (custom runtime): the event is the chunk request, the
    /// answer the report or {"error": …}. Needs AWS_LAMBDA_RUNTIME_API (set by Lambda).
    Lambda,
    /// Serve the worker protocol over HTTP (POST /v1/chunks, GET /healthz): for Cloud Run,
    /// or workers on your own machines (`render --adapter http --workers URL,…`).
    Serve {
        /// Address to listen on (default 0.0.0.0:$PORT, PORT defaulting to 8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Bearer token callers must send.
        #[arg(long, env = "HELIOS_WORKER_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Accept requests without a token (only on trusted networks).
        #[arg(long, conflicts_with = "token")]
        no_auth: bool,
    },
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT (e.g. 1280x720)"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not WIDTHxHEIGHT (e.g. 1280x720)"))
    };
    Ok((p(w)?, p(h)?))
}

fn parse_frames(s: &str) -> Result<(u64, u64), String> {
    let bad = || {
        format!("{s:?} is not a frame range: use START..END (END exclusive, e.g. 0..240) or a frame count")
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let a = a.trim().parse().map_err(|_| bad())?;
            let b = b.trim().parse().map_err(|_| bad())?;
            Ok((a, b))
        }
        None => Ok((0, s.trim().parse().map_err(|_| bad())?)),
    }
}

fn parse_audio(s: &str) -> Result<(String, u64), String> {
    if let Some((file, frame)) = s.rsplit_once('@') {
        if let Ok(f) = frame.trim().parse::<u64>() {
            if file.is_empty() {
                return Err(format!("{s:?}: give the audio file before @FRAME"));
            }
            return Ok((file.to_string(), f));
        }
    }
    if s.is_empty() {
        return Err("empty audio file name".into());
    }
    Ok((s.to_string(), 0))
}
