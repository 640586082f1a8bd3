//! `dibr elements`: expand element dependencies like DIB's `element-info`
//! (`diskimage_builder/element_dependencies.py:main`): the expanded names,
//! or with `--env` the eval-able `IMAGE_ELEMENT` / `IMAGE_ELEMENT_YAML` /
//! `get_image_element_array` text `disk-image-create` evaluates.

use crate::elements::resolve;

#[derive(clap::Args, Debug)]
pub struct ElementsArgs {
    /// Print eval-able bash: IMAGE_ELEMENT, IMAGE_ELEMENT_YAML and get_image_element_array
    #[arg(short = 'e', long)]
    pub env: bool,
    /// Do not add the `base` element (like disk-image-create -n)
    #[arg(short = 'n')]
    pub skip_base: bool,
    /// Accepted for compatibility with old element-info; expansion is the default
    #[arg(short = 'd', long = "expand-dependencies", hide = true)]
    pub expand_dependencies: bool,
    /// List every element found (ELEMENTS_PATH, then dibr's own elements),
    /// one name a line with its directory, instead of expanding
    #[arg(short = 'l', long, conflicts_with_all = ["env", "skip_base"])]
    pub list: bool,
    /// Elements to expand (searched on ELEMENTS_PATH, then dibr's own elements)
    #[arg(required_unless_present = "list")]
    pub elements: Vec<String>,
}

pub fn run(a: &ElementsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let path = crate::settings::elements_path()?;
    let all = path.discover()?;
    if a.list {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (name, e) in &all {
            // `dibr elements --list | head` closes the pipe early: not an error.
            if let Err(e) = writeln!(out, "{name}\t{}", e.path.display()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        return Ok(());
    }
    let requested = resolve::requested_elements(&a.elements, a.skip_base);
    let r = resolve::resolve(&requested, &all, &crate::settings::block_device_kind())?;
    if a.env {
        print!("{}", r.env_script());
    } else {
        println!("{}", r.image_element());
    }
    Ok(())
}
