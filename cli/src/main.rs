//! `imgsearch`: the tutorial's steps as commands against a running gateway.
//!
//! A gRPC client and nothing more: no model, no Milvus code. Every command
//! prints for people by default and JSON with `--json`; errors go to stderr
//! with an exit status a script can test (see [`error::CliError::exit_code`]).

mod attrs;
mod bench;
mod busy;
mod collection;
mod duplicates;
mod error;
mod gateway;
mod health;
mod ingest;
mod keys;
mod picture;
mod search;
mod sources;

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use error::CliError;
use imgsearch_proto::limits;

/// Reverse image search over Milvus: the command line.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    gateway: gateway::GatewayArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, drop, describe or list collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Store images: files, directories (walked recursively) and .zip archives.
    Ingest(IngestArgs),
    /// Find the stored images nearest to each query image, or to stored
    /// images (--like).
    Search(SearchArgs),
    /// Delete stored images by filepath (every row holding one), or every
    /// row a filter selects (--where, --prefix; at most 10000 at once).
    Delete {
        /// Filepaths as stored; with a filter, only those it selects go.
        #[arg(required_unless_present_any = ["wheres", "prefix"])]
        filepaths: Vec<String>,
        #[arg(long, short, env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
        collection: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Count the rows of a collection, or those a filter selects.
    Count {
        #[arg(long, short, env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
        collection: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Find groups of near-duplicate images (re-encoded, resized, lightly
    /// cropped copies): rows linked by chains of pairs within a distance.
    Duplicates(DuplicatesArgs),
    /// API keys for the gateway.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Load the gateway: concurrent Insert streams and search clients over
    /// a directory of images (reused under generated filepaths); prints
    /// throughput, latency quantiles, errors by code, and the peak RSS and
    /// CPU of watched processes.
    Bench(BenchArgs),
    /// Whether the gateway can serve (its Milvus and an embedder answer):
    /// exit 0 if so, 3 if not.
    Health {
        /// Keep checking for up to this many seconds before giving up.
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait: u64,
    },
}

/// The collection the tutorial uses, unless told otherwise.
const DEFAULT_COLLECTION: &str = "image_embeddings";

/// Which rows a command looks at; every condition must hold.
#[derive(Args, Debug, Clone)]
struct FilterArgs {
    /// An attribute condition (repeatable): KEY=V, KEY!=V, KEY<V, KEY<=V,
    /// KEY>V, KEY>=V, KEY^=PREFIX, 'KEY in V1,V2', 'KEY has V', 'KEY exists',
    /// 'KEY missing'. V is an integer, float, true or false when it reads as
    /// one, else a text; "V" (quoted) is always a text. Extended
    /// collections only.
    #[arg(long = "where", value_name = "CONDITION", value_parser = attrs::parse_where)]
    wheres: Vec<imgsearch_proto::v1::Condition>,
    /// Only filepaths that start with this.
    #[arg(long)]
    prefix: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> Option<imgsearch_proto::v1::Filter> {
        attrs::filter(&self.wheres, self.prefix.as_deref())
    }
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a new random key: the key goes into --out (readable by you
    /// alone), and the line for the gateway's keys file, which holds only
    /// the key's digest, to stdout.
    Create {
        /// The key's name, as the gateway's logs will show its calls.
        #[arg(long)]
        name: String,
        /// read (searches), write (also inserts and deletes) or admin (also
        /// creating and dropping collections).
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        /// Confine the key to this tenant's rows (extended collections):
        /// its writes are tagged with it, and it sees nothing else.
        #[arg(long)]
        tenant: Option<String>,
        /// Where to write the key; an existing file is not overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum CollectionCommand {
    /// Create a collection with the tutorial's schema and index, and load it.
    /// An existing one of the same name is dropped first, as in the tutorial.
    Create {
        #[arg(env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
        name: String,
        /// Fail instead of dropping an existing collection.
        #[arg(long)]
        keep_existing: bool,
        /// Add the fields for attributes, content hashes and tenants.
        #[arg(long)]
        extended: bool,
        #[arg(long)]
        json: bool,
    },
    /// Drop a collection and its data.
    Drop { name: String },
    /// Schema, index, row count and load state.
    Describe {
        #[arg(env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Names of all collections.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct IngestArgs {
    /// Image files, directories and .zip archives. In directories and
    /// archives, files ending in jpg, jpeg, png, webp, gif, bmp, tif or tiff
    /// (any case) are taken.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[arg(long, short, env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
    collection: String,
    /// Rows per Milvus insert (the tutorial's BATCH_SIZE); the gateway's
    /// default (128) when not given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_BATCH_SIZE)))]
    batch_size: Option<u32>,
    /// Skip images whose filepath the collection already holds (the gateway
    /// checks before embedding them): an interrupted ingest resumes without
    /// duplicates.
    #[arg(long, conflicts_with = "skip_same_content")]
    skip_existing: bool,
    /// Skip images whose bytes a row of the collection already holds, under
    /// any filepath (a renamed copy); extended collections only.
    #[arg(long)]
    skip_same_content: bool,
    /// An attribute for every image of this run (repeatable): KEY=VALUE
    /// stores a text; KEY:int=3, KEY:float=2.5, KEY:bool=true,
    /// KEY:list=a,b choose the type. Extended collections only.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = attrs::parse_attr)]
    attrs: Vec<(String, imgsearch_proto::v1::AttributeValue)>,
    /// Per-image attributes: JSON lines {"filepath": ..., "attributes":
    /// {...}}, the filepath as stored; they win over --attr.
    #[arg(long, value_name = "FILE")]
    attrs_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Images (files, directories, .zip archives) to send: up to 512 are
    /// held and reused as needed; more are read as sent, each once before
    /// any repeats.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The collection to load; created afresh (dropping one of that name)
    /// unless --reuse-collection.
    #[arg(long, short, default_value = "imgsearch_bench")]
    collection: String,
    #[arg(long)]
    reuse_collection: bool,
    /// Concurrent Insert streams.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Concurrent clients sending one-image Searches.
    #[arg(long, default_value_t = 0)]
    searchers: usize,
    /// Images per second per stream (0: flat out).
    #[arg(long, default_value_t = 0.0)]
    insert_rate: f64,
    /// Searches per second per searcher (0: flat out).
    #[arg(long, default_value_t = 0.0)]
    search_rate: f64,
    /// Seconds to run (when --images is not given).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Images to insert across all streams; the run ends when they are
    /// acknowledged.
    #[arg(long)]
    total_images: Option<u64>,
    /// A process to sample, as NAME=PID (repeatable): RSS, open files and
    /// CPU.
    #[arg(long, value_parser = bench::parse_watch)]
    watch: Vec<(String, u32)>,
    /// Seconds each point of the report's timeline spans.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct DuplicatesArgs {
    /// Two images are near-duplicates when the squared L2 distance between
    /// their vectors is below this. No default: it depends on the model's
    /// weights; the README's near-duplicates section says how to choose it.
    #[arg(long, value_name = "DISTANCE")]
    max_distance: f32,
    #[arg(long, short, env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
    collection: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Print the groups as JSON.
    #[arg(long)]
    json: bool,
    /// Also draw the groups as a picture (PNG): one group a row, oldest
    /// image first (at most 20 groups of 6 images).
    #[arg(long, value_name = "PNG")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// Query images.
    #[arg(required_unless_present = "like")]
    images: Vec<PathBuf>,
    /// "More like this": search with the vector of a stored image, by its
    /// stored filepath (embeds nothing; the image itself is left out).
    #[arg(long, value_name = "FILEPATH", conflicts_with = "images")]
    like: Vec<String>,
    /// Only hits closer than this squared L2 distance.
    #[arg(long, value_name = "DISTANCE")]
    max_distance: Option<f32>,
    /// Skip this many nearest hits first (to page through results).
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Accuracy against speed of the approximate index: 1 (fastest) to 10
    /// (closest to exact); each level searches about twice as much. Without
    /// it the gateway's default level applies.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_SEARCH_LEVEL)))]
    search_level: Option<u32>,
    /// How fresh the data must be: session (sees this gateway's writes, the
    /// default), strong, bounded or eventually.
    #[arg(long, default_value = "session", value_parser = ["session", "strong", "bounded", "eventually"])]
    consistency: String,
    #[arg(long, short, env = "IMGSEARCH_COLLECTION", default_value = DEFAULT_COLLECTION)]
    collection: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Hits per query.
    #[arg(long, short = 'k', default_value_t = limits::DEFAULT_TOP_K,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(limits::MAX_TOP_K)))]
    top_k: u32,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Also draw the results as a picture (PNG): one row per query, the
    /// query then its hits with distances, and the search time.
    #[arg(long, value_name = "PNG")]
    out: Option<PathBuf>,
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON of plain data")
    );
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Health { wait } => {
            health::run(&cli.gateway, Duration::from_secs(*wait)).await?;
            println!("SERVING");
            return Ok(());
        }
        Command::Key(KeyCommand::Create {
            name,
            role,
            tenant,
            out,
        }) => {
            println!("{}", keys::create(name, role, tenant.as_deref(), out)?);
            return Ok(());
        }
        _ => {}
    }
    let mut client = gateway::connect(&cli.gateway).await?;
    match cli.command {
        Command::Collection(c) => match c {
            CollectionCommand::Create {
                name,
                keep_existing,
                extended,
                json,
            } => {
                let info = collection::create(&mut client, &name, keep_existing, extended).await?;
                if json {
                    print_json(&collection::to_json(&info));
                } else {
                    print!("created {}", collection::render(&info));
                }
            }
            CollectionCommand::Drop { name } => {
                collection::drop(&mut client, &name).await?;
                println!("dropped collection {name}");
            }
            CollectionCommand::Describe { name, json } => {
                let info = collection::describe(&mut client, &name).await?;
                if json {
                    print_json(&collection::to_json(&info));
                } else {
                    print!("{}", collection::render(&info));
                }
            }
            CollectionCommand::List { json } => {
                let names = collection::list(&mut client).await?;
                if json {
                    print_json(&names);
                } else {
                    for n in names {
                        println!("{n}");
                    }
                }
            }
        },
        Command::Ingest(a) => {
            let attributes = attrs::IngestAttributes::load(a.attrs, a.attrs_file.as_deref())?;
            let opts = ingest::Options {
                collection: a.collection,
                paths: a.paths,
                batch_size: a.batch_size,
                skip_existing: a.skip_existing,
                skip_same_content: a.skip_same_content,
                attributes: std::sync::Arc::new(attributes),
                progress: !a.json && std::io::stderr().is_terminal(),
                patience: cli.gateway.patience(),
            };
            let (report, stopped) = ingest::run(&mut client, opts).await?;
            if a.json {
                print_json(&report);
            } else {
                print!("{}", report.render());
            }
            if let Some(e) = stopped {
                return Err(e);
            }
        }
        Command::Delete {
            filepaths,
            collection,
            filter,
            json,
        } => {
            let patience = cli.gateway.patience();
            let deleted =
                search::delete(&client, &collection, filepaths, filter.filter(), &patience).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": deleted }));
            } else {
                println!("deleted {deleted} rows from {collection}");
            }
        }
        Command::Count {
            collection,
            filter,
            json,
        } => {
            let patience = cli.gateway.patience();
            let count = search::count(&client, &collection, filter.filter(), &patience).await?;
            if json {
                print_json(&serde_json::json!({ "collection": collection, "count": count }));
            } else {
                println!("{count}");
            }
        }
        Command::Bench(a) => {
            let report = bench::run(
                &client,
                bench::Options {
                    collection: a.collection,
                    images: a.images,
                    streams: a.streams,
                    searchers: a.searchers,
                    insert_rate: a.insert_rate,
                    search_rate: a.search_rate,
                    duration: Duration::from_secs(a.duration),
                    total_images: a.total_images,
                    watch: a.watch,
                    reuse: a.reuse_collection,
                    interval: Duration::from_secs(a.interval),
                },
            )
            .await?;
            if a.json {
                print_json(&report);
            } else {
                print!("{}", report.render());
            }
        }
        Command::Duplicates(a) => {
            let patience = cli.gateway.patience();
            let progress = !a.json && std::io::stderr().is_terminal();
            let report = duplicates::run(
                &client,
                &a.collection,
                a.max_distance,
                a.filter.filter(),
                (&patience, progress),
            )
            .await?;
            show(&report, report.render(), a.json);
            if let Some(out) = a.out {
                save_picture(picture::render_groups(&report), &out, a.json)?;
            }
        }
        // Answered above, without the ImageSearch client.
        Command::Health { .. } | Command::Key(_) => {}
        Command::Search(a) => {
            let opts = search::Options {
                top_k: a.top_k,
                max_distance: a.max_distance,
                offset: a.offset,
                search_level: a.search_level.unwrap_or(0),
                consistency: search::consistency(&a.consistency),
                patience: cli.gateway.patience(),
                filter: a.filter.filter(),
            };
            let results = if a.like.is_empty() {
                search::run(&client, &a.collection, &a.images, &opts).await?
            } else {
                search::like(&client, &a.collection, &a.like, &opts).await?
            };
            show(&results, results.render(), a.json);
            if let Some(out) = a.out {
                // The size the layout defines (picture::size): scripts/test.sh
                // checks the demo's file against it.
                save_picture(picture::render(&results), &out, a.json)?;
            }
        }
    }
    Ok(())
}

/// Prints a result as JSON, or as `text` for people.
fn show(value: &impl serde::Serialize, text: String, json: bool) {
    if json {
        print_json(value);
    } else {
        print!("{text}");
    }
}

/// Writes a picture, first naming on stderr the images it could not show,
/// then (for people) its size.
fn save_picture(
    (picture, not_drawn): (image::RgbImage, Vec<picture::NotDrawn>),
    out: &std::path::Path,
    json: bool,
) -> Result<(), CliError> {
    for n in &not_drawn {
        eprintln!("not drawn: {}: {}", n.filepath, n.reason);
    }
    let (w, h) = picture.dimensions();
    picture.save(out).map_err(|e| CliError::Picture {
        path: out.display().to_string(),
        reason: e.to_string(),
    })?;
    if !json {
        println!("wrote {} ({w}x{h} pixels)", out.display());
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("imgsearch: {e}");
        std::process::exit(e.exit_code());
    }
}
