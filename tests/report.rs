//! Reports and the export bundle: every format and language, the bundle
//! verified offline, the HTML rendered by headless Chromium.

use super::*;

#[test]
fn report_in_english_japanese_csv_and_json() {
    let site = two_jobs();
    let cfg = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        format!("{cfg}\n[[system]]\nname = \"ERP\"\nowner = \"経理部\"\ncriticality = \"high\"\n"),
    )
    .unwrap();
    site.run(&["run"]);
    let out = site.run(&["report"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("# Restore test report") && md.contains("## System: Fixture file server"),
        "{md}"
    );
    assert!(md.contains("not covered by any restore job"), "{md}");
    let ja = text(&site.run(&["report", "--lang", "ja"]).stdout);
    assert!(
        ja.contains("リストアテスト報告書") && ja.contains("No.151 評点"),
        "{ja}"
    );
    let v: Value =
        serde_json::from_slice(&site.run(&["report", "--format", "json"]).stdout).unwrap();
    assert_eq!(v["overall"], 0, "ERP has no job");
    let fs = report_system(&v, "Fixture file server");
    assert_eq!(fs["score"], 1, "{fs}");
    assert_eq!(fs["real_restores"], 2);
    // A standard CSV reader reads it; --excel adds the UTF-8 BOM.
    let csv_path = site.path("r.csv");
    site.run(&[
        "report",
        "--format",
        "csv",
        "--excel",
        "-o",
        csv_path.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&csv_path).unwrap();
    assert!(bytes.starts_with(&[0xef, 0xbb, 0xbf]));
    let py = Command::new("python3")
        .args(["-c", "import csv,sys; rows={r['system']: r for r in csv.DictReader(open(sys.argv[1], encoding='utf-8-sig'))}; print(len(rows), rows['ERP']['owner'], rows['ERP']['score'], rows['Fixture file server']['score'])"])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert_eq!(
        text(&py.stdout).trim(),
        "2 経理部 0 1",
        "{}",
        text(&py.stderr)
    );
}

#[test]
fn export_bundle_verifies_offline() {
    let site = two_jobs();
    let key = site.path("evidence.key");
    assert!(
        bin()
            .arg("keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let cfg = std::fs::read_to_string(&site.config).unwrap().replace(
        "timezone = \"Asia/Tokyo\"\n",
        "timezone = \"Asia/Tokyo\"\nsigning_key_file = \"evidence.key\"\n",
    );
    std::fs::write(&site.config, cfg).unwrap();
    site.run(&["run"]);
    let bundle = site.path("bundle.tar.gz");
    let out = site.run(&["evidence", "export", "-o", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 records in the period"),
        "{}",
        text(&out.stdout)
    );
    let x = site.path("x");
    std::fs::create_dir_all(&x).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    for f in [
        "ledger.jsonl",
        "evidence.pub",
        "report.en.md",
        "report.ja.md",
        "report.json",
        "README.txt",
        "SHA256SUMS",
    ] {
        assert!(x.join(f).exists(), "{f} is missing from the bundle");
    }
    assert_eq!(
        std::fs::read_dir(x.join("runs")).unwrap().count(),
        2,
        "both drills' manifests"
    );
    let sums = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", text(&sums.stdout));
    // The auditor's check needs nothing but the bundle.
    let out = bin()
        .args(["evidence", "verify", "--ledger"])
        .arg(x.join("ledger.jsonl"))
        .arg("--public-key")
        .arg(x.join("evidence.pub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("signed    3 of 3"),
        "the key record and both drills: {}",
        text(&out.stdout)
    );
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let ok = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "chromium is missing: scripts/test.sh installs Debian's chromium"
    );
    let fonts = Command::new("fc-list").arg(":lang=ja").output().unwrap();
    assert!(
        !text(&fonts.stdout).trim().is_empty(),
        "no Japanese font: scripts/test.sh installs fonts-noto-cjk"
    );
    let site = two_jobs();
    site.run(&["run"]);
    for lang in ["en", "ja"] {
        let page = site.path(&format!("report.{lang}.html"));
        let out = site.run(&[
            "report",
            "--format",
            "html",
            "--lang",
            lang,
            "-o",
            page.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let html = std::fs::read_to_string(&page).unwrap();
        for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(
                !html.contains(external),
                "the report loads an external asset ({external})"
            );
        }
        assert!(!html.contains("<script"), "no script");
        let png = site.path(&format!("report.{lang}.png"));
        let profile = site.path(&format!("chromium-{lang}"));
        let out = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
            ])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args([
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1000,1400",
            ])
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let console: Vec<String> = text(&out.stderr)
            .lines()
            .filter(|l| l.contains("CONSOLE"))
            .map(String::from)
            .collect();
        assert!(console.is_empty(), "console messages: {console:?}");
        // Not blank: plenty of pixels that are not the white background.
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = info.color_type.samples();
        let ink = buf[..info.buffer_size()]
            .chunks(px)
            .filter(|p| p.iter().take(3).any(|c| *c < 200))
            .count();
        let total = (info.width * info.height) as usize;
        assert!(
            ink * 100 > total,
            "the {lang} page looks blank ({ink} of {total} pixels inked)"
        );
    }
}
