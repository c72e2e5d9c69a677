-- Step 3 — each live contact's best email (R6 add_to_mailchimp, flag email_differs):
-- its best address not on hold: bulk-mail first, then primary, then the lowest email id.
CREATE OR REPLACE TEMP TABLE c_best AS
SELECT e.contact_id, e.email AS best_email, e.norm AS best_norm
FROM c_email e
JOIN c_state s USING (contact_id)
WHERE e.on_hold = 0
QUALIFY row_number() OVER (
    PARTITION BY e.contact_id
    ORDER BY e.is_bulkmail DESC, e.is_primary DESC, e.email_id) = 1;

-- An address is "on hold anywhere in CiviCRM" if any email row with it, of any contact
-- (deleted ones included), is on hold (R7 email_on_hold).
CREATE OR REPLACE TEMP TABLE c_on_hold AS
SELECT DISTINCT norm FROM c_email WHERE on_hold <> 0;

-- Live owners of each address (matching rule; flag duplicate_contacts).
CREATE OR REPLACE TEMP TABLE c_owner AS
SELECT DISTINCT e.norm, e.contact_id
FROM c_email e JOIN c_state s USING (contact_id);

-- Addresses belonging to a trashed contact (flag contact_deleted).
CREATE OR REPLACE TEMP TABLE c_trashed_email AS
SELECT DISTINCT e.norm
FROM c_email e JOIN c_contact c USING (contact_id)
WHERE c.is_deleted;
