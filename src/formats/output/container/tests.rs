use super::*;

#[test]
fn references_parse_as_docker_does() {
    let r = parse_reference("dibr-test").unwrap();
    assert_eq!(r.to_string(), "dibr-test:latest");
    let r = parse_reference("localhost:5000/a/b_c:v1.2").unwrap();
    assert_eq!(
        (r.repository.as_str(), r.tag.as_str()),
        ("localhost:5000/a/b_c", "v1.2")
    );
    for bad in [
        "Upper",
        "a:",
        "a::b",
        "-a",
        "a..b",
        "a@sha256:00",
        "a:-x",
        "a/:t",
        "",
    ] {
        assert!(parse_reference(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn default_reference_is_lowercase_and_valid() {
    for (name, want) in [
        ("My Image", "my-image"),
        ("debian-13", "debian-13"),
        ("...", "image"),
    ] {
        let r = default_reference(name);
        assert_eq!(r.repository, want);
        assert!(parse_reference(&r.to_string()).is_ok(), "{r}");
    }
}

#[test]
fn rfc3339_of_epochs() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
}

fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(File::open(path).unwrap());
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

fn meta() -> ImageMeta {
    ImageMeta {
        reference: parse_reference("dibr/test:1").unwrap(),
        created: 1_700_000_000,
        architecture: "amd64".into(),
        created_by: "dibr build".into(),
    }
}

/// Both layouts: every digest names its content, the layer is copied as
/// it is, and the same input gives the same bytes.
#[test]
fn archives_name_their_blobs_by_digest() {
    let d = tempfile::tempdir().unwrap();
    let layer_p = d.path().join("layer.tar");
    std::fs::write(&layer_p, vec![7u8; 3000]).unwrap();
    let layer = File::open(&layer_p).unwrap();
    for ty in [ContainerType::Docker, ContainerType::Oci] {
        let a = d.path().join(format!("{ty:?}-a.tar"));
        let b = d.path().join(format!("{ty:?}-b.tar"));
        write_container(ty, &layer, &layer_p, &a, &meta()).unwrap();
        write_container(ty, &layer, &layer_p, &b, &meta()).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let m = members(&a);
        let find = |n: &str| m.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let layer_hex = format!("{:x}", Sha256::digest(vec![7u8; 3000]));
        match ty {
            ContainerType::Docker => {
                let man: Value = serde_json::from_slice(&find("manifest.json").unwrap()).unwrap();
                assert_eq!(man[0]["RepoTags"][0], "dibr/test:1");
                let cfg_name = man[0]["Config"].as_str().unwrap();
                let cfg = find(cfg_name).unwrap();
                assert_eq!(format!("{}.json", hex(&cfg)), cfg_name);
                let cfg: Value = serde_json::from_slice(&cfg).unwrap();
                assert_eq!(cfg["rootfs"]["diff_ids"][0], format!("sha256:{layer_hex}"));
                assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
                assert_eq!(
                    find(&format!("{layer_hex}/layer.tar")).unwrap(),
                    vec![7u8; 3000]
                );
            }
            ContainerType::Oci => {
                let idx: Value = serde_json::from_slice(&find("index.json").unwrap()).unwrap();
                let md = idx["manifests"][0]["digest"].as_str().unwrap();
                let man = find(&format!("blobs/sha256/{}", &md[7..])).unwrap();
                assert_eq!(format!("sha256:{}", hex(&man)), md);
                let man: Value = serde_json::from_slice(&man).unwrap();
                assert_eq!(man["layers"][0]["size"], 3000);
                assert!(find(&format!("blobs/sha256/{layer_hex}")).is_some());
                assert!(find("oci-layout").is_some());
                let dm: Value = serde_json::from_slice(&find("manifest.json").unwrap()).unwrap();
                assert_eq!(dm[0]["Layers"][0], format!("blobs/sha256/{layer_hex}"));
            }
        }
    }
}
