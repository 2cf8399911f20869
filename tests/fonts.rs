//! Fonts known at plan time: the planner lists the fonts the page's text renders with
//! (family requested → platform font, web font or the machine's), records them in the
//! spec, names a family that is missing, and `--strict-fonts` refuses it.

mod common;

use common::*;

fn page(env: &Env, name: &str, css: &str, font_file: bool) -> String {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    if font_file {
        std::fs::copy(
            "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
            dir.join("brand.ttf"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("index.html"),
        format!(
            "<!doctype html><html><head><style>{css}</style></head><body><h1>Title</h1><p>Body text</p></body></html>"
        ),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

#[test]
fn a_missing_family_is_named_at_plan_time_and_strict_fonts_refuses_it() {
    let env = Env::new();
    let comp = page(
        &env,
        "missing",
        "h1 { font-family: 'No Such Family', sans-serif; } p { font-family: 'DejaVu Serif'; }",
        false,
    );
    let out = env.ok(&["plan", &comp, "--emit", "spec.json", "--frames", "0..10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("font family 'No Such Family' is not available"),
        "{err}"
    );
    assert!(!err.contains("'DejaVu Serif' is not available"), "{err}");
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("spec.json")).unwrap()).unwrap();
    let fonts = spec["composition"]["fonts"].as_array().unwrap();
    let serif = fonts
        .iter()
        .find(|f| f["requested"].as_str().unwrap().contains("DejaVu Serif"))
        .unwrap_or_else(|| panic!("{fonts:?}"));
    assert_eq!(serif["platform"], "DejaVu Serif");
    assert!(fonts
        .iter()
        .any(|f| f["requested"].as_str().unwrap().contains("No Such Family")));

    let r = env.run(&[
        "render",
        &comp,
        "-o",
        "x.mp4",
        "--frames",
        "0..10",
        "--strict-fonts",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success());
    assert!(
        err.contains("--strict-fonts") && err.contains("'No Such Family'"),
        "{err}"
    );
    assert!(!env.path("x.mp4").exists());
}

#[test]
fn a_web_font_from_the_bundle_is_recorded_as_one_and_passes_strict_fonts() {
    let env = Env::new();
    let comp = page(
        &env,
        "web",
        "@font-face { font-family: 'Brand'; src: url('brand.ttf'); } body { font-family: 'Brand', serif; }",
        true,
    );
    env.ok(&[
        "plan",
        &comp,
        "--emit",
        "spec.json",
        "--frames",
        "0..10",
        "--strict-fonts",
    ]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("spec.json")).unwrap()).unwrap();
    let fonts = spec["composition"]["fonts"].as_array().unwrap();
    assert!(
        fonts
            .iter()
            .all(|f| f["web"] == true && f["requested"].as_str().unwrap().contains("Brand")),
        "{fonts:?}"
    );
}
