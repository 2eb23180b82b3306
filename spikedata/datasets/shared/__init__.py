"""What several datasets share: the declaration type (`declaration`), the option groups (`options`) and the
machinery of each kind of dataset: IDX images Poisson-encoded (`images`), folders of event files (`event_folder`
finds them, `event_encoding` bins them), speech corpora (`speech`) and the Heidelberg spike files (`heidelberg`
reads them, `heidelberg_encoding` bins them)."""
