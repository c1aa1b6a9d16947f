//! PostgreSQL knowledge: the only code that reads PostgreSQL's own files and
//! formats. It knows nothing of repositories, storage or commands.

pub mod control;
pub mod history;
pub mod lsn;
pub mod pidfile;
pub mod version;
pub mod walheader;
pub mod walname;
