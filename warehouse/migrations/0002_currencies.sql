-- Rows are (re)written from warehouse/currencies.py after every migration run.
create table app.currencies (
    currency   text primary key,
    minor_unit integer not null check (minor_unit between 0 and 4)
);
