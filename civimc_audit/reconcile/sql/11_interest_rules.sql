-- Step 11 — the interest rules I1–I6 (DESIGN "Interest groups"), one row per person of i_people
-- and mapped interest.
--   winner, per mapped group, by the test of step 6 ("Who wins"):
--     no member                       => CiviCRM (and I1: no interest data);
--     no history row for (contact, that group), or no contact yet (R3 creates one)
--                                     => Mailchimp; the same when the newest row is undated;
--     otherwise the later of the group's latest history date and the member's last_changed,
--     compared as UTC instants to the second; a tie goes to CiviCRM (policy tie_winner).
--   I1  no entry for the interest (not yet a member, interest added or mapped since, or not
--       in the audience at all)               -> no_change, reason_code no_interest_data
--   I2  mailchimp_interest = civi_in          -> no_change
--   I3  differ, Mailchimp wins, interest true  -> add_to_civicrm_group (the mapped group)
--   I4  differ, Mailchimp wins, interest false -> remove_from_civicrm_group (the mapped group)
--   I5  differ, CiviCRM wins, civi_in          -> set_interest_in_mailchimp
--   I6  differ, CiviCRM wins, not civi_in      -> clear_interest_in_mailchimp
-- no_history_date (as R2/R3 in step 7): an undated newest history row lets Mailchimp win, but
-- I3/I4 then become cannot_sync rather than change the group on an unknown date.
CREATE OR REPLACE TEMP TABLE i_decided AS
WITH r AS (
    SELECT p.person_id, p.email, p.contact_id, p.member_id, p.display_name, p.mailchimp_changed,
           m.interest_id, m.interest_name, m.category_title, m.group_id, m.group_title,
           m.in_audience,
           CASE WHEN m.in_audience AND json_type(p.interests[m.pos]) = 'BOOLEAN'
                THEN p.interests[m.pos]::BOOLEAN END AS mailchimp_interest,
           c.gc_status, coalesce(c.civi_in, false) AS civi_in, c.civicrm_changed,
           c.history_status, coalesce(c.has_history, false) AS has_history,
           coalesce(c.history_undated, false) AS history_undated,
           date_trunc('second', c.civicrm_changed) AS c_sec,
           date_trunc('second', p.mailchimp_changed) AS m_sec
    FROM i_people p
    CROSS JOIN i_map m
    LEFT JOIN i_civi c ON c.contact_id = p.contact_id AND c.group_id = m.group_id
), w AS (
    SELECT r.* EXCLUDE (c_sec, m_sec),
           CASE
               WHEN member_id IS NULL THEN 'civicrm'
               WHEN civicrm_changed IS NULL THEN 'mailchimp'
               WHEN m_sec IS NULL THEN 'civicrm'
               WHEN c_sec > m_sec THEN 'civicrm'
               WHEN c_sec = m_sec THEN getvariable('tie_winner')
               ELSE 'mailchimp'
           END AS winner,
           coalesce(member_id IS NOT NULL AND has_history AND c_sec = m_sec, false) AS tie
    FROM r
)
SELECT w.*,
       CASE
           WHEN mailchimp_interest IS NULL THEN 'I1'
           WHEN mailchimp_interest = civi_in THEN 'I2'
           WHEN winner = 'mailchimp' AND mailchimp_interest THEN 'I3'
           WHEN winner = 'mailchimp' THEN 'I4'
           WHEN civi_in THEN 'I5'
           ELSE 'I6'
       END AS rule
FROM w;

CREATE OR REPLACE TEMP VIEW i_ruled AS
SELECT d.*,
       CASE
           WHEN rule IN ('I3', 'I4') AND history_undated THEN 'cannot_sync'
           WHEN rule IN ('I1', 'I2') THEN 'no_change'
           WHEN rule = 'I3' THEN 'add_to_civicrm_group'
           WHEN rule = 'I4' THEN 'remove_from_civicrm_group'
           WHEN rule = 'I5' THEN 'set_interest_in_mailchimp'
           ELSE 'clear_interest_in_mailchimp'
       END AS outcome,
       CASE
           WHEN rule = 'I1' THEN 'no_interest_data'
           WHEN rule IN ('I3', 'I4') AND history_undated THEN 'no_history_date'
       END AS reason_code
FROM i_decided d;
